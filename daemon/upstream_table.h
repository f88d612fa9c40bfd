/**
 * \file upstream_table.h
 * The questions in flight, by name, type, class and the DO and CD flags,
 * so that an identical question joins the one already asked.  Chained
 * hashing with the keyed hash of cache_key_hash(); the table grows as it
 * fills.
 */
#ifndef ACRDNS_UPSTREAM_TABLE_H
#define ACRDNS_UPSTREAM_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include "cache.h"
#include "wire.h"

/** A question as the table keys it; the first member of what it holds. */
struct upstream_question {
	struct upstream_question *hnext;
	uint64_t hash;
	uint8_t name[WIRE_NAME_MAX + 1];
	uint16_t name_len, qtype, qclass;
	uint8_t flags;                /**< CACHE_KEY_DO | CACHE_KEY_CD */
};

struct upstream_table {
	struct upstream_question **slots;
	size_t mask;
	size_t count;
};

/** @return 0, or -1 when out of memory. */
int upstream_table_init(struct upstream_table *t);
void upstream_table_cleanup(struct upstream_table *t);

/** @return the question key is the key of, or NULL; *hash receives the key's hash. */
struct upstream_question *upstream_table_find(const struct upstream_table *t,
					      const struct cache_key *key, uint64_t *hash);

/** Fill q's key fields from key and hash, and add it. */
void upstream_table_add(struct upstream_table *t, struct upstream_question *q,
			const struct cache_key *key, uint64_t hash);

/** Take q out of the table (nothing happens when it is not there). */
void upstream_table_remove(struct upstream_table *t, struct upstream_question *q);

/** @return the cache key of q (pointing into q). */
struct cache_key upstream_question_key(const struct upstream_question *q);

#endif
