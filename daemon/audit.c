/**
 * \file audit.c
 * The audit table: open addressing over keyed hashes of wire names, with a
 * dense entry array that grows up to its bound.  Questions arrive from the
 * main loop and from worker threads, so one mutex guards it; it is taken
 * only for names the policy would deny, never on an allowed name's path.
 */
#include "autoconf.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "hash.h"

#define EMPTY UINT32_MAX

struct audit {
	pthread_mutex_t mu;
	size_t max;                /**< names listed at most */
	struct audit_entry *entries;
	size_t n, cap;
	uint32_t *slots;           /**< entry index or EMPTY; at least twice max */
	size_t mask;
	uint64_t questions, unlisted;
	time_t since;
};

struct audit *audit_new(size_t max_names)
{
	struct audit *a = calloc(1, sizeof(*a));
	size_t slots = 16;

	if (!a)
		return NULL;
	a->max = max_names ? max_names : AUDIT_NAMES_DEFAULT;
	while (slots < a->max * 2)
		slots *= 2;
	if (!(a->slots = malloc(slots * sizeof(*a->slots)))) {
		free(a);
		return NULL;
	}
	memset(a->slots, 0xff, slots * sizeof(*a->slots));
	a->mask = slots - 1;
	a->since = time(NULL);
	pthread_mutex_init(&a->mu, NULL);
	return a;
}

void audit_free(struct audit *a)
{
	if (!a)
		return;
	pthread_mutex_destroy(&a->mu);
	free(a->entries);
	free(a->slots);
	free(a);
}

/** @return the slot holding name, or the empty one where it would go. */
static size_t slot_of(const struct audit *a, const uint8_t *name, size_t len, uint32_t h)
{
	size_t i = h & a->mask;

	for (;;) {
		uint32_t idx = a->slots[i];
		if (idx == EMPTY)
			return i;
		const struct audit_entry *e = &a->entries[idx];
		if (e->hash == h && e->name_len == len && memcmp(e->name, name, len) == 0)
			return i;
		i = (i + 1) & a->mask;
	}
}

static void set_rule(struct audit_entry *e, const char *rule)
{
	size_t n = strlen(rule);

	if (n >= sizeof(e->rule))
		n = sizeof(e->rule) - 1;
	memcpy(e->rule, rule, n);
	e->rule[n] = '\0';
}

void audit_note(struct audit *a, const uint8_t *name, size_t len, const char *rule)
{
	if (!a || len == 0 || len > WIRE_NAME_MAX)
		return;
	uint32_t h = (uint32_t)hash_bytes(name, len);
	time_t now = time(NULL);

	pthread_mutex_lock(&a->mu);
	a->questions++;
	size_t i = slot_of(a, name, len, h);
	if (a->slots[i] != EMPTY) {
		struct audit_entry *e = &a->entries[a->slots[i]];
		e->count++;
		e->last = now;
		/* A reload may have moved the name under another rule. */
		if (strncmp(e->rule, rule, sizeof(e->rule) - 1) != 0)
			set_rule(e, rule);
		goto out;
	}
	if (a->n == a->max) {
		a->unlisted++;
		goto out;
	}
	if (a->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 64;
		if (cap > a->max)
			cap = a->max;
		struct audit_entry *e = realloc(a->entries, cap * sizeof(*e));
		if (!e) {
			a->unlisted++;
			goto out;
		}
		a->entries = e;
		a->cap = cap;
	}
	struct audit_entry *e = &a->entries[a->n];
	memcpy(e->name, name, len);
	e->name_len = (uint8_t)len;
	e->hash = h;
	e->count = 1;
	e->first = e->last = now;
	set_rule(e, rule);
	a->slots[i] = (uint32_t)a->n++;
out:
	pthread_mutex_unlock(&a->mu);
}

void audit_reset(struct audit *a)
{
	pthread_mutex_lock(&a->mu);
	memset(a->slots, 0xff, (a->mask + 1) * sizeof(*a->slots));
	a->n = 0;
	a->questions = a->unlisted = 0;
	a->since = time(NULL);
	pthread_mutex_unlock(&a->mu);
}

static int busiest_first(const void *x, const void *y)
{
	const struct audit_entry *a = x, *b = y;

	if (a->count != b->count)
		return a->count > b->count ? -1 : 1;
	size_t n = a->name_len < b->name_len ? a->name_len : b->name_len;
	int c = memcmp(a->name, b->name, n);
	return c ? c : (int)a->name_len - (int)b->name_len;
}

int audit_report(struct audit *a, struct audit_report *out)
{
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&a->mu);
	out->max_names = a->max;
	out->questions = a->questions;
	out->unlisted = a->unlisted;
	out->since = a->since;
	if (a->n && !(out->entries = malloc(a->n * sizeof(*out->entries)))) {
		pthread_mutex_unlock(&a->mu);
		return -1;
	}
	if (a->n)
		memcpy(out->entries, a->entries, a->n * sizeof(*out->entries));
	out->n = a->n;
	pthread_mutex_unlock(&a->mu);
	/* An empty report has no array: qsort() must not be handed NULL. */
	if (out->n)
		qsort(out->entries, out->n, sizeof(*out->entries), busiest_first);
	return 0;
}

void audit_report_free(struct audit_report *r)
{
	free(r->entries);
	r->entries = NULL;
	r->n = 0;
}
