/**
 * \file log.c
 * stderr logger with syslog priority prefixes.  Each line is formatted
 * into one buffer and written with a single write(2) so that lines from
 * a busy daemon do not interleave.
 */
#include "autoconf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static enum log_level current_level = LOG_LVL_INFO;

static const char *const level_names[] = {
	[LOG_LVL_ERR] = "err", [LOG_LVL_WARNING] = "warning",
	[LOG_LVL_NOTICE] = "notice", [LOG_LVL_INFO] = "info",
	[LOG_LVL_DEBUG] = "debug",
};

void log_set_level(enum log_level level)
{
	current_level = level;
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

static void log_write(enum log_level level, const char *fmt, va_list ap)
{
	char buf[2048];
	int n;

	n = snprintf(buf, sizeof(buf), "<%d>", (int)level);
	n += vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	/* Control characters from names or files must not forge log lines. */
	for (int i = 3; i < n; i++)
		if ((unsigned char)buf[i] < 0x20)
			buf[i] = '?';
	buf[n++] = '\n';
	if (write(STDERR_FILENO, buf, (size_t)n) < 0) {
		/* Nowhere left to report this. */
	}
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

void log_query(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_write(LOG_LVL_INFO, fmt, ap);
	va_end(ap);
}
