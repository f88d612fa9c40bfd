/**
 * \file cache.c
 * An open-addressing hash table (linear probing, the keyed hash kept in
 * each slot) plus an LRU list.  A lookup reads the slots, which sit side
 * by side, and touches an entry only when its whole hash matches: on a
 * big cache, a miss costs one cache-line fetch instead of a walk down a
 * chain of entries scattered over the heap.  Each entry is one
 * allocation: header, TTL offsets, name, message.  Memory is accounted as
 * the allocator reports it (malloc_usable_size plus its chunk header) and
 * the slot array counts too, so that `size` bounds what the cache really
 * holds, not just the bytes of its answers.
 */
#include "autoconf.h"

#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "hash.h"

struct cache_entry {
	struct cache_entry *prev, *next;   /**< LRU: head is most recent */
	uint64_t hash;
	uint64_t stored_ms;
	uint64_t stale_until_ms;
	uint32_t ttl;
	uint32_t gen;
	uint16_t qtype, qclass;
	uint16_t msg_len, nttl;
	uint8_t name_len;                  /**< 255 stored as 255 */
	uint8_t flags;
	bool has_target;
	uint32_t charged;                  /**< bytes accounted for this entry */
	uint16_t ttl_off[];                /**< nttl offsets, then the name, then the message */
};

/** A slot of the table; empty when e is NULL. */
struct slot {
	uint64_t hash;
	struct cache_entry *e;
};

struct cache {
	struct slot *slots;
	size_t mask;                       /**< slots - 1, a power of two less one */
	size_t count;
	size_t bytes;
	size_t max_bytes;
	bool shared;                       /**< worker threads read it: lock */
	pthread_mutex_t mu;
	struct cache_entry head;           /**< LRU sentinel (last: its array is flexible) */
};

static void lock(const struct cache *c)
{
	if (c->shared)
		pthread_mutex_lock(&((struct cache *)c)->mu);
}

static void unlock(const struct cache *c)
{
	if (c->shared)
		pthread_mutex_unlock(&((struct cache *)c)->mu);
}

void cache_share(struct cache *c)
{
	c->shared = true;
}

/* glibc's chunk header, which malloc_usable_size() leaves out. */
#define CHUNK_HEADER sizeof(size_t)

static size_t entry_size(const struct cache_entry *e)
{
	return e->charged;
}

static uint8_t *entry_name(struct cache_entry *e)
{
	return (uint8_t *)(e->ttl_off + e->nttl);
}

static uint8_t *entry_msg(struct cache_entry *e)
{
	return entry_name(e) + e->name_len;
}

struct cache *cache_new(size_t max_bytes)
{
	struct cache *c = calloc(1, sizeof(*c));
	size_t n = 64;   /* grows with the entries */

	if (!c)
		return NULL;
	c->slots = calloc(n, sizeof(*c->slots));
	if (!c->slots) {
		free(c);
		return NULL;
	}
	c->mask = n - 1;
	c->max_bytes = max_bytes;
	c->bytes = n * sizeof(*c->slots);
	c->head.prev = c->head.next = &c->head;
	pthread_mutex_init(&c->mu, NULL);
	return c;
}

static void lru_unlink(struct cache_entry *e)
{
	e->prev->next = e->next;
	e->next->prev = e->prev;
}

static void lru_front(struct cache *c, struct cache_entry *e)
{
	e->next = c->head.next;
	e->prev = &c->head;
	c->head.next->prev = e;
	c->head.next = e;
}

/** Empty slot i, moving later slots of its run back so that every probe still finds them. */
static void slot_delete(struct cache *c, size_t i)
{
	for (size_t j = i;;) {
		j = (j + 1) & c->mask;
		if (!c->slots[j].e)
			break;
		size_t home = c->slots[j].hash & c->mask;
		/* Slot j stays when its home lies cyclically in (i, j]. */
		if (i <= j ? (i < home && home <= j) : (i < home || home <= j))
			continue;
		c->slots[i] = c->slots[j];
		i = j;
	}
	c->slots[i].e = NULL;
}

static void entry_remove(struct cache *c, struct cache_entry *e)
{
	size_t i = e->hash & c->mask;

	while (c->slots[i].e != e)
		i = (i + 1) & c->mask;
	slot_delete(c, i);
	lru_unlink(e);
	c->count--;
	c->bytes -= entry_size(e);
	free(e);
}

void cache_free(struct cache *c)
{
	if (!c)
		return;
	while (c->head.next != &c->head) {
		struct cache_entry *e = c->head.next;
		lru_unlink(e);
		free(e);
	}
	free(c->slots);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

static void evict(struct cache *c)
{
	while (c->bytes > c->max_bytes && c->head.prev != &c->head)
		entry_remove(c, c->head.prev);
}

void cache_set_limit(struct cache *c, size_t max_bytes)
{
	lock(c);
	c->max_bytes = max_bytes;
	evict(c);
	unlock(c);
}

uint64_t cache_key_hash(const struct cache_key *k)
{
	uint8_t buf[WIRE_NAME_MAX + 8];

	memcpy(buf, k->name, k->name_len);
	wire_put16(buf + k->name_len, k->qtype);
	wire_put16(buf + k->name_len + 2, k->qclass);
	buf[k->name_len + 4] = k->flags;
	return hash_bytes(buf, (size_t)k->name_len + 5);
}

static struct cache_entry *find(struct cache *c, const struct cache_key *k, uint64_t h)
{
	for (size_t i = h & c->mask;; i = (i + 1) & c->mask) {
		const struct slot *s = &c->slots[i];
		if (!s->e)
			return NULL;
		struct cache_entry *e = s->e;
		if (s->hash == h && e->qtype == k->qtype && e->qclass == k->qclass &&
		    e->flags == k->flags && e->name_len == k->name_len &&
		    memcmp(entry_name(e), k->name, k->name_len) == 0)
			return e;
	}
}

static void slot_put(struct slot *slots, size_t mask, uint64_t h, struct cache_entry *e)
{
	size_t i = h & mask;

	while (slots[i].e)
		i = (i + 1) & mask;
	slots[i].hash = h;
	slots[i].e = e;
}

/** Double the slots.  @return false when out of memory */
static bool grow(struct cache *c)
{
	size_t n = (c->mask + 1) * 2;
	struct slot *t = calloc(n, sizeof(*t));

	if (!t)
		return false;
	for (size_t i = 0; i <= c->mask; i++)
		if (c->slots[i].e)
			slot_put(t, n - 1, c->slots[i].hash, c->slots[i].e);
	free(c->slots);
	c->slots = t;
	c->bytes += (n - (c->mask + 1)) * sizeof(*t);
	c->mask = n - 1;
	return true;
}

static uint32_t clamp(uint32_t v, uint32_t lo, uint32_t hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

/** What the walk over an upstream reply's records found. */
struct prepare_scan {
	uint16_t kept[3];   /* records copied, per section */
	uint32_t min_ttl;   /* the smallest TTL copied, UINT32_MAX when none */
	uint32_t soa_ttl;   /* the authority SOA's negative TTL, UINT32_MAX when none */
	bool cacheable;     /* false when there were more records than TTL offsets */
};

/**
 * Check the question and copy the header and question to a->msg.
 * @return the offset after the question, or 0 when the message is malformed
 */
static size_t prepare_question(const uint8_t *reply, size_t len, struct cache_answer *a)
{
	size_t pos = WIRE_HDR;
	int n;

	if (len < WIRE_HDR || len > sizeof(a->msg) || wire_get16(reply + 4) != 1)
		return 0;
	n = wire_name_read(reply, len, &pos, NULL);
	/* An uncompressed question, so that a client's spelling of the same
	 * name fits over it byte for byte. */
	if (n < 0 || pos - WIRE_HDR != (size_t)n || pos + 4 > len)
		return 0;
	pos += 4;
	/* The question is copied uncompressed at offset 12, as the client
	 * will see it; the rest is copied record by record, leaving out OPT. */
	memcpy(a->msg, reply, pos);
	return pos;
}

/**
 * Copy the records after the question (at pos) to a->msg, leaving out OPT,
 * recording where each TTL lives and what the TTLs say.
 * @return 0, or -1 when the message is malformed
 */
static int prepare_records(const uint8_t *reply, size_t len, size_t pos, struct cache_answer *a,
			   struct prepare_scan *scan)
{
	size_t out = pos;
	struct wire_rr rr;
	unsigned counts[3], total;

	a->nttl = 0;
	a->has_target = false;
	counts[0] = wire_get16(reply + 6);
	counts[1] = wire_get16(reply + 8);
	counts[2] = wire_get16(reply + 10);
	total = counts[0] + counts[1] + counts[2];
	for (unsigned i = 0; i < total; i++) {
		int section = i < counts[0] ? 0 : i < counts[0] + counts[1] ? 1 : 2;
		size_t start = pos;
		if (wire_rr_next(reply, len, &pos, &rr) < 0)
			return -1;
		if (rr.type == LDNS_RR_TYPE_OPT) {
			if (section != 2)
				return -1;
			continue;
		}
		if (a->nttl == CACHE_MAX_RRS) {
			scan->cacheable = false;
		} else {
			a->ttl_off[a->nttl++] = (uint16_t)(out + (rr.fixed - start) + 4);
		}
		uint32_t ttl = rr.ttl > INT32_MAX ? 0 : rr.ttl; /* RFC 2181 8 */
		if (wire_type_has_target(rr.type))
			a->has_target = true;
		if (section == 1 && rr.type == LDNS_RR_TYPE_SOA && rr.rdlen >= 22) {
			uint32_t minimum = wire_get32(reply + rr.rdata + rr.rdlen - 4);
			scan->soa_ttl = ttl < minimum ? ttl : minimum;
		}
		/* OPT is left out; a record after it would move, and a
		 * compression pointer into it would then point astray. */
		if (out != start)
			return -1;
		memcpy(a->msg + out, reply + start, pos - start);
		out += pos - start;
		scan->kept[section]++;
		if (ttl < scan->min_ttl)
			scan->min_ttl = ttl;
	}
	a->len = (uint16_t)out;
	wire_put16(a->msg + 6, scan->kept[0]);
	wire_put16(a->msg + 8, scan->kept[1]);
	wire_put16(a->msg + 10, scan->kept[2]);
	return 0;
}

/** @return how long an answer with these flags and records may be cached */
static uint32_t prepare_ttl(uint16_t flags, const struct prepare_scan *scan, const struct cache_ttl *lim)
{
	uint8_t rcode = WIRE_RCODE(flags);
	uint32_t ttl;

	if (flags & WIRE_TC) {
		ttl = 0;
	} else if (rcode == LDNS_RCODE_NXDOMAIN || (rcode == LDNS_RCODE_NOERROR && scan->kept[0] == 0)) {
		/* RFC 2308 5: negative answers live as long as the SOA says,
		 * and are not cached without one. */
		ttl = scan->soa_ttl == UINT32_MAX ? 0 : scan->soa_ttl;
		if (ttl > lim->negative_ttl)
			ttl = lim->negative_ttl;
	} else if (rcode == LDNS_RCODE_NOERROR) {
		ttl = clamp(scan->min_ttl == UINT32_MAX ? 0 : scan->min_ttl, lim->min_ttl, lim->max_ttl);
	} else {
		ttl = 0; /* SERVFAIL, REFUSED, ...: never cached */
	}
	return ttl;
}

/**
 * Rewrite every TTL so that aging from the stored value is exact:
 * raised to min_ttl, cut to max_ttl, and for a negative answer
 * (negative true) cut to the negative TTL so the SOA tells clients the same.
 */
static void prepare_rewrite_ttls(struct cache_answer *a, const struct cache_ttl *lim, uint32_t ttl,
				 bool negative)
{
	for (unsigned i = 0; i < a->nttl; i++) {
		uint8_t *p = a->msg + a->ttl_off[i];
		uint32_t t = wire_get32(p);
		if (t > INT32_MAX)
			t = 0;
		t = clamp(t, lim->min_ttl, lim->max_ttl);
		if (negative)
			t = t > ttl ? ttl : t;
		wire_put32(p, t);
	}
}

int cache_prepare(const uint8_t *reply, size_t len, const struct cache_ttl *lim,
		  struct cache_answer *a)
{
	struct prepare_scan scan = { { 0, 0, 0 }, UINT32_MAX, UINT32_MAX, true };
	size_t pos;

	if (!(pos = prepare_question(reply, len, a)))
		return -1;
	if (prepare_records(reply, len, pos, a, &scan) < 0)
		return -1;
	uint16_t flags = wire_get16(reply + 2);
	uint32_t ttl = prepare_ttl(flags, &scan, lim);
	prepare_rewrite_ttls(a, lim, ttl,
			     scan.kept[0] == 0 || WIRE_RCODE(flags) == LDNS_RCODE_NXDOMAIN);
	a->ttl = scan.cacheable ? ttl : 0;
	return 0;
}

static void insert(struct cache *c, const struct cache_key *key, const struct cache_answer *a,
		   uint64_t now_ms, uint32_t stale_ttl, uint32_t gen);

void cache_insert(struct cache *c, const struct cache_key *key, const struct cache_answer *a,
		  uint64_t now_ms, uint32_t stale_ttl, uint32_t gen)
{
	if (a->ttl == 0)
		return;
	lock(c);
	insert(c, key, a, now_ms, stale_ttl, gen);
	unlock(c);
}

static void insert(struct cache *c, const struct cache_key *key, const struct cache_answer *a,
		   uint64_t now_ms, uint32_t stale_ttl, uint32_t gen)
{
	uint64_t h;
	struct cache_entry *e;
	size_t size;

	h = cache_key_hash(key);
	if ((e = find(c, key, h)))
		entry_remove(c, e);
	size = sizeof(*e) + a->nttl * sizeof(uint16_t) + key->name_len + a->len;
	if (size + CHUNK_HEADER > c->max_bytes / 4)
		return;
	/* At most three slots in four in use, so that probes stay short;
	 * the slots are charged, and eviction makes room for them. */
	if ((c->count + 1) * 4 > (c->mask + 1) * 3 && !grow(c) && (c->count + 1) * 8 > (c->mask + 1) * 7)
		return;
	/* Room first, then the allocation: malloc can then reuse the chunks
	 * just freed, where allocating first grows the heap and leaves the
	 * evicted entries behind as holes. */
	size_t want = (size + CHUNK_HEADER + 15) & ~(size_t)15;
	while (c->bytes + want > c->max_bytes && c->head.prev != &c->head)
		entry_remove(c, c->head.prev);
	if (!(e = malloc(size)))
		return; /* the answer is still sent, just not kept */
	e->charged = (uint32_t)(malloc_usable_size(e) + CHUNK_HEADER);
	e->hash = h;
	e->stored_ms = now_ms;
	e->ttl = a->ttl;
	e->stale_until_ms = now_ms + ((uint64_t)a->ttl + stale_ttl) * 1000;
	e->gen = gen;
	e->qtype = key->qtype;
	e->qclass = key->qclass;
	e->flags = key->flags;
	e->name_len = (uint8_t)key->name_len;
	e->msg_len = a->len;
	e->nttl = a->nttl;
	e->has_target = a->has_target;
	memcpy(e->ttl_off, a->ttl_off, a->nttl * sizeof(uint16_t));
	memcpy(entry_name(e), key->name, key->name_len);
	memcpy(entry_msg(e), a->msg, a->len);
	slot_put(c->slots, c->mask, h, e);
	lru_front(c, e);
	c->count++;
	c->bytes += entry_size(e);
	evict(c);
}

enum cache_status cache_lookup(struct cache *c, const struct cache_key *key, uint64_t now_ms,
			       struct cache_msg *msg, uint32_t *age, uint32_t *gen, bool *has_target)
{
	uint64_t h = cache_key_hash(key);
	struct cache_entry *e = find(c, key, h);

	if (!e)
		return CACHE_MISS;
	if (now_ms >= e->stale_until_ms) {
		entry_remove(c, e);
		return CACHE_MISS;
	}
	msg->msg = entry_msg(e);
	msg->len = e->msg_len;
	msg->nttl = e->nttl;
	msg->ttl_off = e->ttl_off;
	*age = (uint32_t)((now_ms - e->stored_ms) / 1000);
	*gen = e->gen;
	*has_target = e->has_target;
	if (*age >= e->ttl)
		return CACHE_STALE;
	lru_unlink(e);
	lru_front(c, e);
	return CACHE_FRESH;
}

size_t cache_render(const struct cache_msg *m, uint32_t age, bool stale,
		    const struct wire_query *q, uint8_t *out)
{
	uint16_t stored = wire_get16(m->msg + 2);
	uint16_t flags = WIRE_QR | WIRE_RA | (q->flags & (0x7800 | WIRE_RD | WIRE_CD)) |
			 WIRE_RCODE(stored);

	/* AD only for clients that asked for DNSSEC data (RFC 6840 5.8). */
	if ((stored & WIRE_AD) && (q->edns_do || (q->flags & WIRE_AD)))
		flags |= WIRE_AD;
	memcpy(out, m->msg, m->len);
	wire_put16(out, q->id);
	wire_put16(out + 2, flags);
	memcpy(out + WIRE_HDR, q->qname_raw, q->qname_len);
	for (unsigned i = 0; i < m->nttl; i++) {
		uint8_t *p = out + m->ttl_off[i];
		uint32_t t = wire_get32(p);
		wire_put32(p, stale ? CACHE_STALE_TTL : t > age ? t - age : 0);
	}
	return m->len;
}

size_t cache_flush(struct cache *c, const uint8_t *name, size_t len)
{
	size_t n = 0;

	lock(c);
	for (struct cache_entry *e = c->head.next, *next; e != &c->head; e = next) {
		next = e->next;
		if (!name || (e->name_len == len && memcmp(entry_name(e), name, len) == 0)) {
			entry_remove(c, e);
			n++;
		}
	}
	unlock(c);
	return n;
}

void cache_walk(const struct cache *c, uint64_t now_ms, cache_walk_fn fn, void *arg)
{
	lock(c);
	for (struct cache_entry *e = c->head.next; e != &c->head; e = e->next) {
		int64_t age = (int64_t)((now_ms - e->stored_ms) / 1000);
		fn(arg, entry_name(e), e->qtype, e->qclass, e->flags, (int64_t)e->ttl - age, entry_size(e));
	}
	unlock(c);
}

enum cache_status cache_fetch(struct cache *c, const struct cache_key *key, uint64_t now_ms,
			      const struct wire_query *q, uint8_t *out, size_t *len, uint32_t *gen,
			      bool *has_target)
{
	struct cache_msg m;
	uint32_t age;

	lock(c);
	enum cache_status st = cache_lookup(c, key, now_ms, &m, &age, gen, has_target);
	if (st != CACHE_MISS)
		*len = cache_render(&m, age, st == CACHE_STALE, q, out);
	unlock(c);
	return st;
}

bool cache_fresh(struct cache *c, const struct cache_key *key, uint64_t now_ms)
{
	struct cache_msg m;
	uint32_t age, gen;
	bool has_target;

	lock(c);
	bool fresh = cache_lookup(c, key, now_ms, &m, &age, &gen, &has_target) == CACHE_FRESH;
	unlock(c);
	return fresh;
}

size_t cache_entries(const struct cache *c)
{
	lock(c);
	size_t n = c->count;
	unlock(c);
	return n;
}

size_t cache_bytes(const struct cache *c)
{
	lock(c);
	size_t n = c->bytes;
	unlock(c);
	return n;
}
