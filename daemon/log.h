/**
 * \file log.h
 * Logging to stderr with syslog priority prefixes ("<6>message"), which
 * journald turns into priorities.  One global level; cheap when filtered.
 */
#ifndef ACRDNS_LOG_H
#define ACRDNS_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum log_level {
	LOG_LVL_ERR = 3,
	LOG_LVL_WARNING = 4,
	LOG_LVL_NOTICE = 5,
	LOG_LVL_INFO = 6,
	LOG_LVL_DEBUG = 7,
};

/** How lines are written: "<6>text" or one JSON object per line. */
enum log_format { LOG_FORMAT_TEXT, LOG_FORMAT_JSON };

/** Set the most verbose level that is written. */
void log_set_level(enum log_level level);

/** @return true when messages of this level are written. */
bool log_enabled(enum log_level level);

/**
 * Parse a level name (err, warning, notice, info, debug).
 * @return 0 and *level set, or -1 for an unknown name.
 */
int log_level_parse(const char *name, enum log_level *level);

/** Write one line at a level; a trailing newline is added. */
void log_msg(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/** Write lines as text or JSON from now on. */
void log_set_format(enum log_format format);

/** One query log line's fields; via is NULL unless a CNAME target decided. */
struct log_query_fields {
	const char *client, *proto, *name, *type, *verdict, *rule, *via;
};

/** Write a query log line at info priority, whatever the level (log.queries decides). */
void log_query(const struct log_query_fields *q);

/**
 * What to do about a failure to write under path: for EROFS, the drop-in a
 * unit with ProtectSystem=strict needs (ReadWritePaths=dir), after "; ";
 * otherwise "".  @return buf
 */
const char *log_path_hint(int err, const char *dir, char *buf, size_t len);

#define log_err(...) log_msg(LOG_LVL_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARNING, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_LVL_NOTICE, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) \
	do { if (log_enabled(LOG_LVL_DEBUG)) log_msg(LOG_LVL_DEBUG, __VA_ARGS__); } while (0)

#endif
