/**
 * \file log.c
 * stderr logger with syslog priority prefixes.  Each line is formatted
 * into one buffer and written with a single write(2) so that lines from
 * a busy daemon do not interleave.
 */
#include "autoconf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static enum log_level current_level = LOG_LVL_INFO;
static enum log_format current_format = LOG_FORMAT_TEXT;
static int prefix_mode = -1;  /* -1: not decided yet; 1: write "<N>" before JSON lines */

static const char *const level_names[] = {
	[LOG_LVL_ERR] = "err", [LOG_LVL_WARNING] = "warning",
	[LOG_LVL_NOTICE] = "notice", [LOG_LVL_INFO] = "info",
	[LOG_LVL_DEBUG] = "debug",
};

void log_set_level(enum log_level level)
{
	current_level = level;
}

void log_set_format(enum log_format format)
{
	current_format = format;
}

bool log_enabled(enum log_level level)
{
	return level <= current_level;
}

int log_level_parse(const char *name, enum log_level *level)
{
	for (int l = LOG_LVL_ERR; l <= LOG_LVL_DEBUG; l++) {
		if (strcmp(name, level_names[l]) == 0) {
			*level = (enum log_level)l;
			return 0;
		}
	}
	if (strcmp(name, "error") == 0) {
		*level = LOG_LVL_ERR;
		return 0;
	}
	return -1;
}

/**
 * JSON lines carry their level inside; the "<N>" prefix is added only when
 * stderr is journald's stream (JOURNAL_STREAM names its device and inode),
 * which strips it and keeps the priority.  Elsewhere (a file, docker logs)
 * each line stays a JSON document.
 */
static bool json_prefix(void)
{
	if (prefix_mode < 0) {
		const char *js = getenv("JOURNAL_STREAM");
		unsigned long dev, ino;
		struct stat st;
		prefix_mode = js && sscanf(js, "%lu:%lu", &dev, &ino) == 2 &&
			      fstat(STDERR_FILENO, &st) == 0 && st.st_dev == dev && st.st_ino == ino;
	}
	return prefix_mode == 1;
}

static void emit(char *buf, size_t n)
{
	buf[n++] = '\n';
	if (write(STDERR_FILENO, buf, n) < 0) {
		/* Nowhere left to report this. */
	}
}

/* Room kept at the end of a line for the closing of a JSON object and '\n'. */
#define LINE_MAX_LEN 2048
#define TAIL 8

/** Append s to buf as the inside of a JSON string; stop short of the tail. */
static size_t json_str(char *buf, size_t n, const char *s)
{
	static const char hex[] = "0123456789abcdef";

	for (; *s && n + 6 < LINE_MAX_LEN - TAIL; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			buf[n++] = '\\';
			buf[n++] = (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			memcpy(buf + n, "\\u00", 4);
			buf[n + 4] = hex[c >> 4];
			buf[n + 5] = hex[c & 15];
			n += 6;
		} else {
			buf[n++] = (char)c;
		}
	}
	return n;
}

static size_t json_start(char *buf, enum log_level level)
{
	struct timespec ts;
	struct tm tm;
	size_t n = 0;

	if (json_prefix())
		n = (size_t)snprintf(buf, LINE_MAX_LEN, "<%d>", (int)level);
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n += strftime(buf + n, LINE_MAX_LEN - n, "{\"time\":\"%Y-%m-%dT%H:%M:%S", &tm);
	n += (size_t)snprintf(buf + n, LINE_MAX_LEN - n, ".%03ldZ\",\"level\":\"%s\"",
			      ts.tv_nsec / 1000000, level_names[level]);
	return n;
}

static size_t json_field(char *buf, size_t n, const char *key, const char *value)
{
	if (!value || n + strlen(key) + 8 >= LINE_MAX_LEN - TAIL)
		return n;
	n += (size_t)snprintf(buf + n, LINE_MAX_LEN - n, ",\"%s\":\"", key);
	n = json_str(buf, n, value);
	buf[n++] = '"';
	return n;
}

static void log_write(enum log_level level, const char *fmt, va_list ap)
{
	char buf[LINE_MAX_LEN + 1];
	int n;

	if (current_format == LOG_FORMAT_JSON) {
		char msg[LINE_MAX_LEN];
		vsnprintf(msg, sizeof(msg), fmt, ap);
		size_t m = json_field(buf, json_start(buf, level), "msg", msg);
		buf[m++] = '}';
		emit(buf, m);
		return;
	}
	n = snprintf(buf, sizeof(buf), "<%d>", (int)level);
	n += vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	/* Control characters from names or files must not forge log lines. */
	for (int i = 3; i < n; i++)
		if ((unsigned char)buf[i] < 0x20)
			buf[i] = '?';
	emit(buf, (size_t)n);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	log_write(level, fmt, ap);
	va_end(ap);
}

static void log_text(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_text(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_write(level, fmt, ap);
	va_end(ap);
}

void log_query(const struct log_query_fields *q)
{
	if (current_format == LOG_FORMAT_TEXT) {
		log_text(LOG_LVL_INFO, "query client=%s proto=%s name=%s type=%s verdict=%s rule=\"%s\"%s%s",
			 q->client, q->proto, q->name, q->type, q->verdict, q->rule,
			 q->via ? " via=" : "", q->via ? q->via : "");
		return;
	}
	char buf[LINE_MAX_LEN + 1];
	size_t n = json_start(buf, LOG_LVL_INFO);
	n = json_field(buf, n, "event", "query");
	n = json_field(buf, n, "client", q->client);
	n = json_field(buf, n, "proto", q->proto);
	n = json_field(buf, n, "name", q->name);
	n = json_field(buf, n, "type", q->type);
	n = json_field(buf, n, "verdict", q->verdict);
	n = json_field(buf, n, "rule", q->rule);
	n = json_field(buf, n, "via", q->via);
	buf[n++] = '}';
	emit(buf, n);
}

/* Under the shipped unit everything outside its StateDirectory= and
 * RuntimeDirectory= is read-only, and "Read-only file system" alone sends
 * the user looking at mounts. */
const char *log_path_hint(int err, const char *dir, char *buf, size_t len)
{
	if (err == EROFS)
		snprintf(buf, len, "; under systemd, ProtectSystem=strict makes it read-only: add "
			 "ReadWritePaths=%s in a drop-in (systemctl edit acrdnsd)", dir);
	else if (len)
		buf[0] = '\0';
	return buf;
}
