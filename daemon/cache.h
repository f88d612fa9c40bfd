/**
 * \file cache.h
 * Answers kept in wire form, keyed by lowercase name, type, class and the
 * client's DO and CD bits.  A stored answer carries the offsets of its
 * TTL fields, so a hit is a copy plus a few stores: no parsing, no
 * allocation.  Bounded in bytes, least recently used evicted first.
 * Answers that expired stay for stale_ttl to be served when every
 * upstream fails (RFC 8767).
 */
#ifndef ACRDNS_CACHE_H
#define ACRDNS_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wire.h"

#define CACHE_KEY_DO 1
#define CACHE_KEY_CD 2
/** TTL of records in a stale answer (RFC 8767 section 4). */
#define CACHE_STALE_TTL 30
/** Most TTL fields an answer may have; a larger one is not cached. */
#define CACHE_MAX_RRS 512

struct cache_key {
	const uint8_t *name;   /**< lowercase wire name */
	uint16_t name_len;
	uint16_t qtype;
	uint16_t qclass;
	uint8_t flags;         /**< CACHE_KEY_DO | CACHE_KEY_CD */
};

/** TTL limits from the configuration. */
struct cache_ttl {
	uint32_t min_ttl, max_ttl, negative_ttl, stale_ttl;
};

/** A message ready to be rendered for a client: no OPT, TTL fields known. */
struct cache_msg {
	const uint8_t *msg;
	uint16_t len;
	uint16_t nttl;
	const uint16_t *ttl_off;
};

/** An upstream reply prepared for caching and rendering. */
struct cache_answer {
	uint8_t msg[65535];
	uint16_t len;
	uint16_t nttl;
	uint16_t ttl_off[CACHE_MAX_RRS];
	uint32_t ttl;          /**< how long it may be cached; 0: not at all */
	bool has_target;       /**< holds records with targets (wire_type_has_target) that filter mode checks */
};

struct cache_entry;
struct cache;

enum cache_status { CACHE_MISS, CACHE_FRESH, CACHE_STALE };

/** @return the keyed hash of a key (also used by the in-flight table). */
uint64_t cache_key_hash(const struct cache_key *k);

/** @return a cache bounded to max_bytes, or NULL when out of memory. */
struct cache *cache_new(size_t max_bytes);
void cache_free(struct cache *c);

/** Change the byte bound (a reload), evicting at once when it shrank. */
void cache_set_limit(struct cache *c, size_t max_bytes);

/**
 * Check and normalise an upstream reply: strip OPT, clamp TTLs to the
 * limits, find how long it may be cached (RFC 2308 for negative answers).
 * @return 0, or -1 when the message is malformed
 */
int cache_prepare(const uint8_t *reply, size_t len, const struct cache_ttl *lim,
		  struct cache_answer *a);

/**
 * Store a prepared answer (nothing happens when a->ttl is 0).
 * @param gen the policy generation that checked its CNAME chain
 */
void cache_insert(struct cache *c, const struct cache_key *key, const struct cache_answer *a,
		  uint64_t now_ms, uint32_t stale_ttl, uint32_t gen);

/**
 * Find an answer.  A fresh hit moves the entry to the front of the LRU.
 * @param msg receives the message when found
 * @param age receives seconds since it was stored
 * @param gen receives the policy generation it was checked under
 * @param has_target receives whether it holds records whose targets filter mode checks
 */
enum cache_status cache_lookup(struct cache *c, const struct cache_key *key, uint64_t now_ms,
			       struct cache_msg *msg, uint32_t *age, uint32_t *gen, bool *has_target);

/**
 * Write msg as the answer to q: the client's ID and question spelling,
 * flags for a cached answer, every TTL less age (or CACHE_STALE_TTL when
 * stale).  out must hold msg->len bytes.
 * @return bytes written
 */
size_t cache_render(const struct cache_msg *msg, uint32_t age, bool stale,
		    const struct wire_query *q, uint8_t *out);

/** Drop every entry for a name (all types), or everything when name is NULL. */
size_t cache_flush(struct cache *c, const uint8_t *name, size_t len);

/**
 * Look key up and, when found, render it for q into out (stale entries with
 * the stale TTL), in one step under the cache's lock: what a caller uses
 * while worker threads share the cache.  cache_lookup() and cache_render()
 * are the unlocked pieces.
 * @param len receives the rendered length unless the result is CACHE_MISS
 */
enum cache_status cache_fetch(struct cache *c, const struct cache_key *key, uint64_t now_ms,
			      const struct wire_query *q, uint8_t *out, size_t *len, uint32_t *gen,
			      bool *has_target);

/** @return true when key has a fresh answer (locked, like cache_fetch). */
bool cache_fresh(struct cache *c, const struct cache_key *key, uint64_t now_ms);

/**
 * From now on every call takes the cache's lock (worker threads read it).
 * Call before the threads start.
 */
void cache_share(struct cache *c);

/** Called by cache_walk() for each entry; ttl is negative once stale. */
typedef void (*cache_walk_fn)(void *arg, const uint8_t *name, uint16_t qtype, uint16_t qclass,
			      uint8_t flags, int64_t ttl, size_t bytes);

/** Visit every entry, most recently used first. */
void cache_walk(const struct cache *c, uint64_t now_ms, cache_walk_fn fn, void *arg);

/** @return entries and bytes held. */
size_t cache_entries(const struct cache *c);
size_t cache_bytes(const struct cache *c);

#endif
