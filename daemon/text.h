/**
 * \file text.h
 * A growing text buffer for answers built piece by piece (control socket
 * replies, the metrics exposition).  Running out of memory is remembered,
 * so callers check once at the end.
 */
#ifndef ACRDNS_TEXT_H
#define ACRDNS_TEXT_H

#include <stdbool.h>
#include <stddef.h>

struct text {
	char *buf;
	size_t len, cap;
	bool oom;
};

/** Append formatted text; after a failure, nothing more is appended. */
void text_put(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
