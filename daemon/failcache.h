/**
 * \file failcache.h
 * Questions that failed upstream, remembered for a while (RFC 9520): for
 * a hold-down of 1 s, doubled at each failure in a row up to 5 minutes,
 * such a question is not asked again and is answered at once (stale, or
 * SERVFAIL with the reason it failed).  For the failure recheck time after
 * a failure (RFC 8767 section 4, 30 s by default) a stale answer goes at
 * once, without waiting for upstream.
 *
 * A question is its name, type, class and DO/CD flags: one name's failure
 * never touches another name or another type.  The table has a fixed
 * number of entries; when full, the entry that would be forgotten first
 * gives way.  No socket and no clock: the caller says what time it is.
 */
#ifndef ACRDNS_FAILCACHE_H
#define ACRDNS_FAILCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "cache.h"

#define FAILCACHE_HOLD_MIN_MS 1000u      /**< RFC 9520 3.2: at least 1 second */
#define FAILCACHE_HOLD_MAX_MS 300000u    /**< RFC 9520 3.2: at most 5 minutes */
#define FAILCACHE_ENTRIES 4096           /**< default table size */

struct failcache;

/** What is known of a question. */
enum failcache_state {
	FAILCACHE_NONE,     /**< no recent failure: ask upstream as usual */
	FAILCACHE_HELD,     /**< within its hold-down: do not ask; stale or SERVFAIL at once */
	FAILCACHE_RECHECK,  /**< failed within the recheck time: stale at once, refresh behind */
};

/** The failure remembered for a question. */
struct failcache_why {
	uint16_t ede;        /**< the Extended DNS Error code its SERVFAIL carries */
	char text[96];       /**< and its text */
	uint32_t hold_ms;    /**< the current hold-down */
};

/**
 * @param entries most questions remembered (rounded up to a multiple of 4)
 * @param recheck_ms the RFC 8767 failure recheck time
 * @return the table, or NULL when out of memory
 */
struct failcache *failcache_new(size_t entries, uint32_t recheck_ms);

void failcache_free(struct failcache *fc);

/** Forget every failure and take a new recheck time (reload, `acrdnsctl flush`). */
void failcache_reset(struct failcache *fc, uint32_t recheck_ms);

/**
 * Forget the failures of every question about name (every type, class
 * and flag), or of every question when name is NULL.
 * @return the number forgotten
 */
size_t failcache_flush(struct failcache *fc, const uint8_t *name, size_t len);

/**
 * The question key failed at now_ms: hold it down for 1 s, or twice its
 * last hold-down when it failed before and is still remembered (at most
 * FAILCACHE_HOLD_MAX_MS).
 * @param ede, text why it failed, as its SERVFAIL will say (text is cut to fit)
 * @return the hold-down given, in milliseconds
 */
uint32_t failcache_fail(struct failcache *fc, const struct cache_key *key, uint64_t now_ms,
			uint16_t ede, const char *text);

/** The question key was answered: forget its failures. */
void failcache_forget(struct failcache *fc, const struct cache_key *key);

/**
 * What is known of the question key at now_ms.
 * @param why set to the remembered failure unless FAILCACHE_NONE (valid until the next change)
 */
enum failcache_state failcache_check(const struct failcache *fc, const struct cache_key *key,
				     uint64_t now_ms, const struct failcache_why **why);

/** @return questions remembered now (for status and tests). */
size_t failcache_count(const struct failcache *fc, uint64_t now_ms);

#endif
