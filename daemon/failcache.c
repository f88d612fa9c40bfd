/**
 * \file failcache.c
 * The failure memory: a set-associative table (four entries a bucket,
 * buckets chosen by a keyed hash, so a client cannot pile names into one)
 * of questions that failed upstream, with each one's hold-down.
 */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "failcache.h"
#include "hash.h"
#include "wire.h"

#define WAYS 4

struct failcache_entry {
	uint64_t failed_ms;      /**< the last failure */
	uint64_t forget_ms;      /**< 0: a free entry */
	struct failcache_why why;
	uint16_t name_len;
	uint16_t qtype, qclass;
	uint8_t flags;
	uint8_t name[WIRE_NAME_MAX];
};

struct failcache {
	struct failcache_entry *e;
	size_t n_buckets;
	uint32_t recheck_ms;
};

struct failcache *failcache_new(size_t entries, uint32_t recheck_ms)
{
	struct failcache *fc = calloc(1, sizeof(*fc));

	if (!fc)
		return NULL;
	fc->n_buckets = entries < WAYS ? 1 : (entries + WAYS - 1) / WAYS;
	fc->e = calloc(fc->n_buckets * WAYS, sizeof(*fc->e));
	if (!fc->e) {
		free(fc);
		return NULL;
	}
	fc->recheck_ms = recheck_ms;
	return fc;
}

void failcache_free(struct failcache *fc)
{
	if (!fc)
		return;
	free(fc->e);
	free(fc);
}

void failcache_reset(struct failcache *fc, uint32_t recheck_ms)
{
	memset(fc->e, 0, fc->n_buckets * WAYS * sizeof(*fc->e));
	fc->recheck_ms = recheck_ms;
}

size_t failcache_flush(struct failcache *fc, const uint8_t *name, size_t len)
{
	size_t n = 0;

	for (size_t i = 0; i < fc->n_buckets * WAYS; i++) {
		struct failcache_entry *e = &fc->e[i];
		if (!e->forget_ms)
			continue;
		if (name && (e->name_len != len || memcmp(e->name, name, len) != 0))
			continue;
		e->forget_ms = 0;
		n++;
	}
	return n;
}

/** The bucket of a question: its name, type, class and flags. */
static struct failcache_entry *bucket(const struct failcache *fc, const struct cache_key *key)
{
	uint8_t buf[WIRE_NAME_MAX + 5];

	memcpy(buf, key->name, key->name_len);
	wire_put16(buf + key->name_len, key->qtype);
	wire_put16(buf + key->name_len + 2, key->qclass);
	buf[key->name_len + 4] = key->flags;
	return &fc->e[(hash_bytes(buf, key->name_len + 5u) % fc->n_buckets) * WAYS];
}

static bool same(const struct failcache_entry *e, const struct cache_key *key)
{
	return e->forget_ms && e->name_len == key->name_len && e->qtype == key->qtype &&
	       e->qclass == key->qclass && e->flags == key->flags &&
	       memcmp(e->name, key->name, key->name_len) == 0;
}

/** The live entry for key in its bucket b, or NULL. */
static struct failcache_entry *find(struct failcache_entry *b, const struct cache_key *key,
				    uint64_t now_ms)
{
	for (int i = 0; i < WAYS; i++)
		if (same(&b[i], key) && now_ms < b[i].forget_ms)
			return &b[i];
	return NULL;
}

uint32_t failcache_fail(struct failcache *fc, const struct cache_key *key, uint64_t now_ms,
			uint16_t ede, const char *text)
{
	struct failcache_entry *b = bucket(fc, key), *e = find(b, key, now_ms);
	uint32_t hold = FAILCACHE_HOLD_MIN_MS;

	if (e) {
		hold = e->why.hold_ms >= FAILCACHE_HOLD_MAX_MS / 2 ? FAILCACHE_HOLD_MAX_MS
								   : e->why.hold_ms * 2;
	} else {
		/* A free entry, an expired one, or else the one forgotten soonest. */
		e = &b[0];
		for (int i = 0; i < WAYS; i++) {
			if (!b[i].forget_ms || now_ms >= b[i].forget_ms || same(&b[i], key)) {
				e = &b[i];
				break;
			}
			if (b[i].forget_ms < e->forget_ms)
				e = &b[i];
		}
		memcpy(e->name, key->name, key->name_len);
		e->name_len = key->name_len;
		e->qtype = key->qtype;
		e->qclass = key->qclass;
		e->flags = key->flags;
	}
	e->failed_ms = now_ms;
	e->why.hold_ms = hold;
	e->why.ede = ede;
	snprintf(e->why.text, sizeof(e->why.text), "%s", text ? text : "");
	/* Remembered past the hold-down for as long again, so that a failure
	 * soon after it ends doubles it (backing off), and for the recheck time. */
	uint64_t keep = 2ull * hold > fc->recheck_ms ? 2ull * hold : fc->recheck_ms;
	e->forget_ms = now_ms + keep;
	return hold;
}

void failcache_forget(struct failcache *fc, const struct cache_key *key)
{
	struct failcache_entry *b = bucket(fc, key);

	for (int i = 0; i < WAYS; i++)
		if (same(&b[i], key))
			b[i].forget_ms = 0;
}

enum failcache_state failcache_check(const struct failcache *fc, const struct cache_key *key,
				     uint64_t now_ms, const struct failcache_why **why)
{
	const struct failcache_entry *e = find(bucket(fc, key), key, now_ms);

	if (!e)
		return FAILCACHE_NONE;
	*why = &e->why;
	if (now_ms < e->failed_ms + e->why.hold_ms)
		return FAILCACHE_HELD;
	if (now_ms < e->failed_ms + fc->recheck_ms)
		return FAILCACHE_RECHECK;
	return FAILCACHE_NONE;
}

size_t failcache_count(const struct failcache *fc, uint64_t now_ms)
{
	size_t n = 0;

	for (size_t i = 0; i < fc->n_buckets * WAYS; i++)
		n += fc->e[i].forget_ms && now_ms < fc->e[i].forget_ms;
	return n;
}
