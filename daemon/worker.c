/**
 * \file worker.c
 * Worker threads for the UDP fast path.  A worker owns a libev loop, a
 * shadow struct server (its own counters and reply buffers; the
 * configuration, policy and cache are the main loop's) and one UDP socket
 * per listen address, bound with SO_REUSEPORT beside the main loop's.
 * Queries it cannot answer alone go to the main loop through a locked
 * queue and an ev_async, with the reply_to that sends the answer back out
 * of the worker's socket.
 */
#include "autoconf.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "address.h"
#include "cache.h"
#include "listener.h"
#include "log.h"
#include "query.h"
#include "server.h"
#include "worker.h"

/* Queued for the main loop past this, a query is dropped (and counted). */
#define FORWARD_MAX 8192

struct fwd {
	struct fwd *next;
	struct reply_to rt;
	size_t len;
	uint8_t msg[];
};

struct worker {
	struct server srv;            /**< the shadow this thread answers with */
	struct workers *ws;
	pthread_t thread;
	bool running;
	ev_async stop;
	struct listener *listeners;   /**< UDP only, twins of the main loop's */
};

struct workers {
	struct server *main;
	size_t n;
	struct worker **w;
	pthread_mutex_t mu;           /**< the forward queue */
	struct fwd *head, **tail;
	size_t queued;
	ev_async wake;                /**< on the main loop */
};

unsigned workers_default(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1 : n > 64 ? 64 : (unsigned)n;
}

/* ---- the main loop's side of the queue ---- */

static void drain(struct workers *ws)
{
	struct fwd *list;

	pthread_mutex_lock(&ws->mu);
	list = ws->head;
	ws->head = NULL;
	ws->tail = &ws->head;
	ws->queued = 0;
	pthread_mutex_unlock(&ws->mu);
	while (list) {
		struct fwd *f = list;
		list = f->next;
		STAT_INC(ws->main->stats.queries_udp);
		query_handle(ws->main, f->msg, f->len, &f->rt);
		free(f);
	}
}

static void drain_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	(void)loop;
	(void)revents;
	drain(w->data);
}

/** In a worker thread: hand a query it does not answer to the main loop. */
static void forward(struct worker *wk, const uint8_t *msg, size_t len, const struct reply_to *rt)
{
	struct workers *ws = wk->ws;
	struct fwd *f = malloc(sizeof(*f) + len);
	bool first;

	if (!f) {
		STAT_INC(wk->srv.stats.dropped);
		return;
	}
	f->next = NULL;
	f->rt = *rt;
	f->len = len;
	memcpy(f->msg, msg, len);
	pthread_mutex_lock(&ws->mu);
	if (ws->queued >= FORWARD_MAX) {
		pthread_mutex_unlock(&ws->mu);
		free(f);
		STAT_INC(wk->srv.stats.dropped);
		return;
	}
	first = ws->queued++ == 0;
	*ws->tail = f;
	ws->tail = &f->next;
	pthread_mutex_unlock(&ws->mu);
	if (first)
		ev_async_send(ws->main->loop, &ws->wake);
}

/**
 * The handler of a worker's UDP sockets: what needs only the cache is
 * answered here, the rest goes to the main loop.
 */
static void worker_handle(void *arg, const uint8_t *msg, size_t len, struct reply_to *rt)
{
	struct worker *wk = arg;

	if (!query_fast(&wk->srv, msg, len, rt))
		forward(wk, msg, len, rt);
}

/* ---- the threads ---- */

static void stop_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	(void)w;
	(void)revents;
	ev_break(loop, EVBREAK_ALL);
}

static void *run(void *arg)
{
	struct worker *wk = arg;

	ev_run(wk->srv.loop, 0);
	return NULL;
}

struct workers *workers_new(struct server *main, unsigned n)
{
	struct workers *ws;

	if (n <= 1)
		return NULL;
	if (!(ws = calloc(1, sizeof(*ws))) || !(ws->w = calloc(n - 1, sizeof(*ws->w)))) {
		free(ws);
		log_err("workers: out of memory; running one event loop");
		return NULL;
	}
	ws->main = main;
	pthread_mutex_init(&ws->mu, NULL);
	ws->tail = &ws->head;
	for (size_t i = 0; i < n - 1; i++) {
		struct worker *wk = calloc(1, sizeof(*wk));
		if (!wk || !(wk->srv.loop = ev_loop_new(EVFLAG_AUTO))) {
			free(wk);
			log_err("workers: cannot create a worker loop; running %zu", ws->n + 1);
			break;
		}
		wk->ws = ws;
		ev_async_init(&wk->stop, stop_cb);
		ev_async_start(wk->srv.loop, &wk->stop);
		ws->w[ws->n++] = wk;
	}
	ev_async_init(&ws->wake, drain_cb);
	ws->wake.data = ws;
	ev_async_start(main->loop, &ws->wake);
	cache_share(main->cache);
	return ws;
}

/** Make a worker's sockets match the main loop's UDP listeners. */
static void reconcile(struct worker *wk, struct server *main)
{
	struct listener *keep = NULL;

	for (struct listener *m = main->listeners; m; m = m->next) {
		if (m->udp_fd < 0 || m->inherited || m->udp_passed)
			continue;   /* a passed socket has no SO_REUSEPORT twin of ours */
		struct listener **pp = &wk->listeners, *found = NULL;
		for (; *pp; pp = &(*pp)->next)
			if (address_equal(&(*pp)->addr, &m->addr)) {
				found = *pp;
				*pp = found->next;
				break;
			}
		if (!found && (found = listener_open_worker(&wk->srv, &m->addr, worker_handle, wk)))
			listener_start(found);
		if (found) {
			found->next = keep;
			keep = found;
		}
	}
	for (struct listener *l = wk->listeners, *next; l; l = next) {
		next = l->next;
		listener_close(l);
	}
	wk->listeners = keep;
}

void workers_open(struct workers *ws)
{
	for (size_t i = 0; ws && i < ws->n; i++)
		reconcile(ws->w[i], ws->main);
}

void workers_start(struct workers *ws)
{
	if (!ws)
		return;
	struct server *m = ws->main;
	for (size_t i = 0; i < ws->n; i++) {
		struct worker *wk = ws->w[i];
		if (wk->running)
			continue;
		wk->srv.cfg = m->cfg;
		wk->srv.policy = m->policy;
		wk->srv.policy_gen = m->policy_gen;
		wk->srv.cache = m->cache;
		wk->srv.ttl = m->ttl;
		wk->srv.rl = m->rl;
		wk->srv.audit = m->audit;
		wk->srv.main_nft = m->nft != NULL;
		wk->srv.started = m->started;
		reconcile(wk, m);
		/* Signals are the main loop's: the thread starts with them blocked. */
		sigset_t all, old;
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		int e = pthread_create(&wk->thread, NULL, run, wk);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		if (e) {
			log_err("workers: cannot start a thread: %s", strerror(e));
			continue;
		}
		wk->running = true;
	}
}

void workers_stop(struct workers *ws)
{
	if (!ws)
		return;
	for (size_t i = 0; i < ws->n; i++) {
		struct worker *wk = ws->w[i];
		if (!wk->running)
			continue;
		ev_async_send(wk->srv.loop, &wk->stop);
		pthread_join(wk->thread, NULL);
		wk->running = false;
	}
	/* What they handed over is answered now, before their sockets may close. */
	drain(ws);
}

void workers_free(struct workers *ws)
{
	if (!ws)
		return;
	workers_stop(ws);
	for (size_t i = 0; i < ws->n; i++) {
		struct worker *wk = ws->w[i];
		for (struct listener *l = wk->listeners, *next; l; l = next) {
			next = l->next;
			listener_close(l);
		}
		ev_loop_destroy(wk->srv.loop);
		free(wk);
	}
	ev_async_stop(ws->main->loop, &ws->wake);
	for (struct fwd *f = ws->head, *next; f; f = next) {
		next = f->next;
		free(f);
	}
	pthread_mutex_destroy(&ws->mu);
	free(ws->w);
	free(ws);
}

void workers_add_stats(const struct workers *ws, struct stats *sum)
{
	for (size_t i = 0; ws && i < ws->n; i++)
		stats_add(sum, &ws->w[i]->srv.stats);
}

void workers_total(const struct server *s, struct stats *out)
{
	*out = s->stats;
	workers_add_stats(s->workers, out);
}

size_t workers_count(const struct workers *ws)
{
	return ws ? ws->n : 0;
}
