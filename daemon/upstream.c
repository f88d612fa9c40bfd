/**
 * \file upstream.c
 * Questions in flight: each keeps its attempts (earlier ones stay open
 * after a retry, so a slow first server still counts if it answers first),
 * its retry, patience and deadline timers, and its owner's callback and
 * waiters.  The server list is upstream_servers.c, the socket pool
 * upstream_pool.c, the in-flight table upstream_table.c, and one exchange
 * with one server upstream_attempt.c.
 */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "address.h"
#include "server.h"
#include "upstream.h"
#include "upstream_attempt.h"
#include "upstream_set.h"
#include "upstream_table.h"

#define MAX_ATTEMPTS 8

struct inflight {
	struct upstream_question q;   /**< first: the table holds it by this */
	struct upstreams *u;
	struct upstream_set *set;     /**< the zone's servers, chosen at the start; held */
	upstream_done_fn done;
	void *arg;
	void *waiters;                /**< the owner's, never read here */
	struct upstream_attempt att[MAX_ATTEMPTS];
	int n_att;
	bool late;                    /**< UPSTREAM_PATIENCE has passed */
	struct upstream_failure why;  /**< the most telling failure so far (text empty: none) */
	int why_rank;                 /**< 0 none, 1 a network error, 2 an RCODE a server answered */
	ev_timer retry, patience, deadline;
};

struct upstreams {
	struct server *srv;
	struct upstream_sets sets;
	struct upstream_table table;
};

/* ---- what the daemon asks about ---- */

int upstream_configure(struct upstreams *u, const struct config *cfg, char *err, size_t errlen)
{
	return upstream_sets_configure(&u->sets, cfg, err, errlen);
}

size_t upstream_count(const struct upstreams *u)
{
	return u->sets.list[0]->sv.n;
}

size_t upstream_zone_count(const struct upstreams *u, const uint8_t *name, size_t len)
{
	return upstream_sets_find(&u->sets, name, len)->sv.n;
}

void upstream_on_rebuild(struct upstreams *u, void (*fn)(void *arg), void *arg)
{
	u->sets.rebuilt = fn;
	u->sets.rebuilt_arg = arg;
}

void upstream_drop(struct upstreams *u, const struct cfg_addr *addr)
{
	upstream_sets_drop(&u->sets, addr);
}

void upstream_each(const struct upstreams *u, upstream_each_cb cb, void *arg)
{
	for (size_t i = 0; i < u->sets.n; i++) {
		const struct upstream_set *set = u->sets.list[i];
		for (size_t j = 0; j < set->sv.n; j++)
			cb(arg, set->name, &set->sv.list[j].addr, &set->sv.list[j].n);
	}
}

const char *upstream_route(const struct upstreams *u, const uint8_t *name, size_t len,
			   upstream_each_cb cb, void *arg)
{
	const struct upstream_set *set = upstream_sets_find(&u->sets, name, len);

	for (size_t j = 0; cb && j < set->sv.n; j++)
		cb(arg, set->name, &set->sv.list[j].addr, &set->sv.list[j].n);
	return set->name;
}

size_t upstream_inflight(const struct upstreams *u)
{
	return u->table.count;
}

size_t upstream_sockets(const struct upstreams *u, size_t *idle)
{
	size_t open = 0;

	*idle = 0;
	for (size_t i = 0; i < u->sets.n; i++) {
		const struct upstream_servers *sv = &u->sets.list[i]->sv;
		for (size_t j = 0; j < sv->n; j++)
			*idle += upstream_pool_idle(sv->list[j].pool);
		open += sv->pools.n_sockets;
	}
	return open;
}

struct upstreams *upstream_new(struct server *srv)
{
	struct upstreams *u = calloc(1, sizeof(*u));

	if (!u)
		return NULL;
	u->srv = srv;
	if (upstream_sets_init(&u->sets, srv) < 0) {
		free(u);
		return NULL;
	}
	if (upstream_table_init(&u->table) < 0) {
		upstream_sets_cleanup(&u->sets);
		free(u);
		return NULL;
	}
	return u;
}

/* ---- a question's end ---- */

static void inflight_free(struct inflight *f)
{
	struct ev_loop *loop = f->u->srv->loop;

	upstream_table_remove(&f->u->table, &f->q);
	for (int i = 0; i < f->n_att; i++)
		upstream_attempt_close(&f->att[i]);
	ev_timer_stop(loop, &f->retry);
	ev_timer_stop(loop, &f->patience);
	ev_timer_stop(loop, &f->deadline);
	/* After the attempts: their sockets went back to the set's pools. */
	upstream_set_release(&f->u->sets, f->set);
	free(f);
}

/**
 * Hand the question's end to its owner.  The question leaves the table
 * first, so that the owner may start the same question again at once.
 */
static void inflight_end(struct inflight *f, enum upstream_outcome outcome)
{
	struct cache_key key = upstream_question_key(&f->q);

	upstream_table_remove(&f->u->table, &f->q);
	if (outcome == UPSTREAM_ABANDONED) {
		f->why.ede = 0; /* Other Error: nothing went wrong upstream */
		snprintf(f->why.text, sizeof(f->why.text), "acrdnsd is shutting down");
	} else if (!f->why_rank) {
		f->why.ede = 22;
		snprintf(f->why.text, sizeof(f->why.text), "no upstream answered");
	}
	f->done(f->arg, outcome, &key, outcome == UPSTREAM_ANSWER ? &f->u->srv->answer : NULL,
		outcome == UPSTREAM_ANSWER ? NULL : &f->why, &f->waiters);
	inflight_free(f);
}

/* ---- the next attempt ---- */

/** Tries of addr in this question so far. */
static int tries_of(const struct inflight *f, const struct cfg_addr *addr)
{
	int tries = 0;

	for (int j = 0; j < f->n_att; j++)
		tries += address_equal(&f->att[j].addr, addr);
	return tries;
}

/** Choose the server for the next attempt: fewest tries in this question, then best RTT. */
static const struct cfg_addr *pick_server(const struct inflight *f, ev_tstamp now)
{
	const struct upstream_servers *sv = &f->set->sv;
	const struct upstream_server *best = NULL;
	double best_score = 0;

	for (size_t i = 0; i < sv->n; i++) {
		const struct upstream_server *s = &sv->list[i];
		double rtt = !s->measured ? UPSTREAM_RTO_UNKNOWN
			     : (now - s->changed > UPSTREAM_RTT_FORGET && s->srtt > UPSTREAM_RTO_UNKNOWN)
				       ? UPSTREAM_RTO_UNKNOWN
				       : s->srtt;
		double score = tries_of(f, &s->addr) * 100.0 + rtt;
		if (!best || score < best_score) {
			best = s;
			best_score = score;
		}
	}
	return best ? &best->addr : NULL;
}

/** Any attempt still open? */
static bool attempts_open(const struct inflight *f)
{
	for (int i = 0; i < f->n_att; i++)
		if (f->att[i].fd >= 0)
			return true;
	return false;
}

static void attempt_ended(void *owner, struct upstream_attempt *a, enum upstream_attempt_end end);

/**
 * Send the next attempt, over TCP when tcp is set, to the server at to
 * when set (else the best one), and arm the retry timer.
 * @return false when nothing more can be tried.
 */
static bool send_next(struct inflight *f, bool tcp, const struct cfg_addr *to)
{
	struct server *s = f->u->srv;
	ev_tstamp now = ev_now(s->loop);

	while (f->n_att < MAX_ATTEMPTS) {
		const struct cfg_addr *addr = to ? to : pick_server(f, now);
		if (!addr)
			return false;
		struct upstream_attempt *a = &f->att[f->n_att];
		if (!upstream_attempt_start(a, &f->set->sv, &f->q, addr, tcp, attempt_ended, f))
			return attempts_open(f);
		f->n_att++;
		if (a->fd < 0) {
			tcp = false; /* connect failed at once: on to the next server */
			to = NULL;
			continue;
		}
		double rto = upstream_server_rto(upstream_server_of(&f->set->sv, addr)) *
			     (1 << (tries_of(f, addr) - 1));
		if (tcp)
			rto = UPSTREAM_RTO_MAX;
		f->retry.repeat = rto > UPSTREAM_RTO_MAX ? UPSTREAM_RTO_MAX : rto;
		ev_timer_again(s->loop, &f->retry);
		return true;
	}
	return attempts_open(f);
}

/** Has every server been asked in this question? */
static bool all_asked(const struct inflight *f)
{
	for (size_t i = 0; i < f->set->sv.n; i++)
		if (!tries_of(f, &f->set->sv.list[i].addr))
			return false;
	return true;
}

/**
 * Keep what went wrong with an attempt, for the client's EDE and the log,
 * when it says more than what was kept: a server's answer beats a network
 * error, which beats silence.
 */
static void note_failure(struct inflight *f, const struct upstream_attempt *a,
			 enum upstream_attempt_end end)
{
	char addr[64];
	int rank = end == UPSTREAM_ATTEMPT_REFUSED ? 2 : 1;

	if (rank < f->why_rank)
		return;
	address_str((const struct sockaddr *)&a->addr.ss, addr, sizeof(addr));
	f->why_rank = rank;
	if (end == UPSTREAM_ATTEMPT_REFUSED) {
		const ldns_lookup_table *rc = ldns_lookup_by_id(ldns_rcodes, a->rcode);
		f->why.ede = 22; /* "or they potentially refused to reply" (RFC 8914 4.23) */
		if (rc)
			snprintf(f->why.text, sizeof(f->why.text), "upstream %s answered %s", addr,
				 rc->name);
		else
			snprintf(f->why.text, sizeof(f->why.text), "upstream %s answered RCODE %u",
				 addr, a->rcode);
	} else {
		f->why.ede = 23;
		snprintf(f->why.text, sizeof(f->why.text), "upstream %s %s", addr,
			 a->error ? a->error : "failed");
	}
}

/** What an attempt's end means for the question: another attempt, or the end. */
static void attempt_ended(void *owner, struct upstream_attempt *a, enum upstream_attempt_end end)
{
	struct inflight *f = owner;

	if (end == UPSTREAM_ATTEMPT_REFUSED || end == UPSTREAM_ATTEMPT_FAILED)
		note_failure(f, a, end);
	switch (end) {
	case UPSTREAM_ATTEMPT_ANSWER:
		inflight_end(f, UPSTREAM_ANSWER);
		return;
	case UPSTREAM_ATTEMPT_TRUNCATED: {
		struct cfg_addr addr = a->addr;
		if (!send_next(f, true, &addr) && !attempts_open(f))
			inflight_end(f, UPSTREAM_FAILED);
		return;
	}
	case UPSTREAM_ATTEMPT_NOEDNS: {
		/* The server is marked now: the same server again, without OPT. */
		struct cfg_addr addr = a->addr;
		if (!send_next(f, a->tcp, &addr) && !attempts_open(f))
			inflight_end(f, UPSTREAM_FAILED);
		return;
	}
	case UPSTREAM_ATTEMPT_REFUSED:
		/* SERVFAIL, REFUSED or the like: ask each other server once. */
		if (!all_asked(f) && send_next(f, false, NULL))
			return;
		if (!attempts_open(f))
			inflight_end(f, UPSTREAM_FAILED);
		return;
	case UPSTREAM_ATTEMPT_FAILED:
		if (!send_next(f, false, NULL) && !attempts_open(f))
			inflight_end(f, UPSTREAM_FAILED);
		return;
	}
}

/* ---- timers ---- */

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct inflight *f = w->data;
	(void)revents;

	ev_timer_stop(loop, w);
	if (f->n_att > 0) {
		struct upstream_attempt *last = &f->att[f->n_att - 1];
		struct upstream_server *s = upstream_server_of(&f->set->sv, &last->addr);
		STAT_INC(f->u->srv->stats.upstream_timeouts);
		if (s)
			s->n.timeouts++;
		upstream_server_penalise(s, ev_now(loop));
	}
	/* With every try spent, the deadline decides. */
	send_next(f, false, NULL);
}

static void patience_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct inflight *f = w->data;
	(void)loop;
	(void)revents;

	/* RFC 8767: a stale answer now beats a fresh one too late; the
	 * question goes on so that the cache is refreshed. */
	f->late = true;
	struct cache_key key = upstream_question_key(&f->q);
	f->done(f->arg, UPSTREAM_LATE, &key, NULL, NULL, &f->waiters);
}

static void deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;

	inflight_end(w->data, UPSTREAM_FAILED);
}

/* ---- asking ---- */

void **upstream_resolve(struct upstreams *u, const struct cache_key *key, upstream_done_fn done,
			void *arg, bool *late)
{
	struct server *s = u->srv;
	uint64_t h;
	struct inflight *f = (struct inflight *)(void *)upstream_table_find(&u->table, key, &h);

	if (f) {
		STAT_INC(s->stats.merged);
		*late = f->late;
		return &f->waiters;
	}
	*late = false;
	/* The zone's servers, or `upstreams`': a zone with none fails its names
	 * at once, and a flood at one zone's dead servers fills its own share. */
	struct upstream_set *set = upstream_sets_find(&u->sets, key->name, key->name_len);
	if (set->inflight >= UPSTREAM_MAX_INFLIGHT) {
		STAT_INC(s->stats.inflight_full);
		return NULL;
	}
	if (set->sv.n == 0 || !(f = calloc(1, sizeof(*f))))
		return NULL;
	f->u = u;
	f->set = set;
	upstream_set_hold(set);
	f->done = done;
	f->arg = arg;
	ev_init(&f->retry, retry_cb);
	ev_timer_init(&f->patience, patience_cb, UPSTREAM_PATIENCE, 0);
	ev_timer_init(&f->deadline, deadline_cb, UPSTREAM_DEADLINE, 0);
	f->retry.data = f->patience.data = f->deadline.data = f;
	upstream_table_add(&u->table, &f->q, key, h);
	if (!send_next(f, false, NULL)) {
		inflight_free(f);   /* nobody waits yet: the caller answers */
		return NULL;
	}
	ev_timer_start(s->loop, &f->patience);
	ev_timer_start(s->loop, &f->deadline);
	return &f->waiters;
}

void upstream_free(struct upstreams *u)
{
	if (!u)
		return;
	upstream_sets_closing(&u->sets);
	for (size_t i = 0; i <= u->table.mask; i++)
		while (u->table.slots[i])
			inflight_end((struct inflight *)(void *)u->table.slots[i], UPSTREAM_ABANDONED);
	upstream_sets_cleanup(&u->sets);
	upstream_table_cleanup(&u->table);
	free(u);
}
