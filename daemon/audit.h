/**
 * \file audit.h
 * What audit mode saw: every name the policy would have denied, with the
 * rule that would have denied it, how often it was asked and when first
 * and last, so that an operator rolling acrdns out can turn the list into
 * `allow` rules before enforcing.  One table per process, outside the
 * configuration, so it survives reloads; bounded to a fixed number of
 * names (questions for further names are only counted).  Worker threads
 * answer cache hits too, so the table takes a lock of its own.
 */
#ifndef ACRDNS_AUDIT_H
#define ACRDNS_AUDIT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "wire.h"

/** Names held by default; about 500 bytes each once seen. */
#define AUDIT_NAMES_DEFAULT 4096
/** Bytes of rule text kept per name. */
#define AUDIT_RULE_MAX 240

/** One would-be-denied name. */
struct audit_entry {
	uint8_t name[WIRE_NAME_MAX + 1];   /**< lowercase wire form */
	uint8_t name_len;
	char rule[AUDIT_RULE_MAX];         /**< the rule that would deny it, as last seen */
	uint64_t count;                    /**< questions since the start or the last reset */
	time_t first, last;                /**< wall clock */
	uint32_t hash;
};

/** A copy of the table, for reports: entries busiest first. */
struct audit_report {
	struct audit_entry *entries;
	size_t n;
	size_t max_names;
	uint64_t questions;                /**< every question noted, listed or not */
	uint64_t unlisted;                 /**< questions for names past max_names */
	time_t since;                      /**< start, or the last reset */
};

struct audit;

/**
 * @param max_names names listed at most (0: AUDIT_NAMES_DEFAULT)
 * @return an empty table, or NULL when out of memory
 */
struct audit *audit_new(size_t max_names);
void audit_free(struct audit *a);

/**
 * Count one question for a lowercase wire name that the policy would have
 * denied, and remember rule for it.  Safe from any thread; never allocates
 * past the table's bound, and a failed allocation only counts the question.
 */
void audit_note(struct audit *a, const uint8_t *name, size_t len, const char *rule);

/** Forget every name and count; "since" becomes now. */
void audit_reset(struct audit *a);

/**
 * Copy the table, sorted busiest first (then by name).
 * @return 0, or -1 when out of memory
 */
int audit_report(struct audit *a, struct audit_report *out);
void audit_report_free(struct audit_report *r);

#endif
