/**
 * \file upstream_table.c
 * The in-flight table: lists of questions per slot, each keeping its hash
 * so that a lookup compares names only on a full hash match.
 */
#include "autoconf.h"

#include <stdlib.h>
#include <string.h>

#include "upstream_table.h"

int upstream_table_init(struct upstream_table *t)
{
	t->mask = 1023;
	t->count = 0;
	t->slots = calloc(t->mask + 1, sizeof(*t->slots));
	return t->slots ? 0 : -1;
}

void upstream_table_cleanup(struct upstream_table *t)
{
	free(t->slots);
	t->slots = NULL;
}

struct upstream_question *upstream_table_find(const struct upstream_table *t,
					      const struct cache_key *k, uint64_t *hash)
{
	uint64_t h = cache_key_hash(k);

	*hash = h;
	for (struct upstream_question *q = t->slots[h & t->mask]; q; q = q->hnext)
		if (q->hash == h && q->qtype == k->qtype && q->qclass == k->qclass &&
		    q->flags == k->flags && q->name_len == k->name_len &&
		    memcmp(q->name, k->name, k->name_len) == 0)
			return q;
	return NULL;
}

/** Four times the slots once it holds twice as many questions: rehash every one. */
static void grow(struct upstream_table *t)
{
	size_t n = (t->mask + 1) * 4;
	struct upstream_question **s = calloc(n, sizeof(*s));

	if (!s)
		return;   /* longer chains, still correct */
	for (size_t i = 0; i <= t->mask; i++) {
		struct upstream_question *x = t->slots[i], *next;
		for (; x; x = next) {
			next = x->hnext;
			x->hnext = s[x->hash & (n - 1)];
			s[x->hash & (n - 1)] = x;
		}
	}
	free(t->slots);
	t->slots = s;
	t->mask = n - 1;
}

void upstream_table_add(struct upstream_table *t, struct upstream_question *q,
			const struct cache_key *key, uint64_t hash)
{
	q->hash = hash;
	memcpy(q->name, key->name, key->name_len);
	q->name_len = key->name_len;
	q->qtype = key->qtype;
	q->qclass = key->qclass;
	q->flags = key->flags;
	q->hnext = t->slots[hash & t->mask];
	t->slots[hash & t->mask] = q;
	t->count++;
	if (t->count > (t->mask + 1) * 2)
		grow(t);
}

void upstream_table_remove(struct upstream_table *t, struct upstream_question *q)
{
	struct upstream_question **pp = &t->slots[q->hash & t->mask];

	while (*pp && *pp != q)
		pp = &(*pp)->hnext;
	if (*pp) {
		*pp = q->hnext;
		t->count--;
	}
	q->hnext = NULL;
}

struct cache_key upstream_question_key(const struct upstream_question *q)
{
	return (struct cache_key){ q->name, q->name_len, q->qtype, q->qclass, q->flags };
}
