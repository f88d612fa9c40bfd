/**
 * \file reload.c
 * The reload thread and the loop's side of it.  One thread, started with
 * the first reload, takes two kinds of job under one mutex: a path to build
 * (config_load and policy_new, nothing else: both are pure) and pairs to
 * free.  A finished build is handed back through an ev_async; everything
 * that touches sockets, upstreams or discovery then runs on the loop, in
 * the apply callback.  The loop keeps its own state (building, queued,
 * waiters) without a lock: only the job, the result and the trash are
 * shared.
 */
#include "autoconf.h"

#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "notify.h"
#include "policy.h"
#include "reload.h"

/* Past this at exit, a build still reading (a FIFO) is left to die with the process. */
#define JOIN_WAIT_S 2

struct trash {
	struct trash *next;
	struct reload_pair pair;
};

struct reload {
	struct ev_loop *loop;
	reload_apply_fn apply;
	void *arg;
	ev_async finished_w;
	pthread_t thread;
	bool thread_on;

	pthread_mutex_t mu;           /**< guards the members down to the blank line */
	pthread_cond_t cv;
	char *job;                    /**< a path to build, or NULL */
	bool finished;                /**< result holds a build the loop has not taken */
	struct reload_pair result;
	char result_err[1024];
	struct trash *trash;          /**< pairs to free */
	bool quit;

	bool building;                /**< a job is out, its result not applied yet */
	char *queued;                 /**< path of the reload asked meanwhile, or NULL */
	struct reload_waiter *waiters;        /**< for the build that runs */
	struct reload_waiter *queued_waiters; /**< for the one queued */
	unsigned long builds;
};

static void pair_free(struct reload_pair *p)
{
	policy_free(p->policy); /* before its configuration: it borrows the local names */
	config_free(p->cfg);
	p->policy = NULL;
	p->cfg = NULL;
}

/** In the thread: what a reload may do off the loop, and nothing more. */
static void build(const char *path, struct reload_pair *pair, char *err, size_t errlen)
{
	if (!(pair->cfg = config_load(path, err, errlen)))
		return;
	/* The configured registries only: the loop lays the discovered names
	 * over it, as they are when the swap happens, not as they were now. */
	if (!(pair->policy = policy_new(pair->cfg, NULL, err, errlen)))
		pair_free(pair);
}

static void *run(void *arg)
{
	struct reload *r = arg;

	/* Behind the loop and the workers when the CPUs are busy: a reload may
	 * take a little longer, answers may not.  Not logged when it fails:
	 * the loop may be changing the log settings meanwhile. */
	struct sched_param idle = { 0 };
	if (pthread_setschedparam(pthread_self(), SCHED_IDLE, &idle) != 0)
		(void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10);
	pthread_mutex_lock(&r->mu);
	for (;;) {
		if (r->trash) {
			struct trash *t = r->trash;
			r->trash = NULL;
			pthread_mutex_unlock(&r->mu);
			while (t) {
				struct trash *next = t->next;
				pair_free(&t->pair);
				free(t);
				t = next;
			}
			pthread_mutex_lock(&r->mu);
			continue;
		}
		if (r->job) {
			char *path = r->job, err[sizeof(r->result_err)] = "";
			struct reload_pair pair = { NULL, NULL };
			r->job = NULL;
			pthread_mutex_unlock(&r->mu);
			build(path, &pair, err, sizeof(err));
			free(path);
			pthread_mutex_lock(&r->mu);
			if (r->quit) {
				/* The loop may be gone: nobody to hand it to. */
				pair_free(&pair);
				continue;
			}
			r->result = pair;
			memcpy(r->result_err, err, sizeof(err));
			r->finished = true;
			/* Under the lock: reload_free() cannot stop the loop meanwhile. */
			ev_async_send(r->loop, &r->finished_w);
			continue;
		}
		if (r->quit)
			break;
		pthread_cond_wait(&r->cv, &r->mu);
	}
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

/** Free a pair off the loop (on it when even the list node cannot be had). */
static void discard(struct reload *r, struct reload_pair *pair)
{
	struct trash *t;

	if (!pair->cfg && !pair->policy)
		return;
	if (!r->thread_on || !(t = malloc(sizeof(*t)))) {
		pair_free(pair);
		return;
	}
	t->pair = *pair;
	pair->cfg = NULL;
	pair->policy = NULL;
	pthread_mutex_lock(&r->mu);
	t->next = r->trash;
	r->trash = t;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

static void answer(struct reload_waiter *list, int rc, const char *err)
{
	while (list) {
		struct reload_waiter *w = list;
		list = w->next;
		w->done(w, rc, err);
	}
}

static void finish(struct reload *r, struct reload_pair *pair, const char *build_err);

static int start_thread(struct reload *r, char *err, size_t errlen)
{
	sigset_t all, old;
	int e;

	/* Signals are the loop's: the thread starts with them blocked. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	e = pthread_create(&r->thread, NULL, run, r);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (e) {
		snprintf(err, errlen, "cannot start the reload thread: %s", strerror(e));
		return -1;
	}
	r->thread_on = true;
	return 0;
}

static void start(struct reload *r, const char *path)
{
	char err[256];
	char *copy = strdup(path);

	notify_reloading();
	if (!copy || (!r->thread_on && start_thread(r, err, sizeof(err)) < 0)) {
		if (!copy)
			snprintf(err, sizeof(err), "out of memory");
		free(copy);
		struct reload_pair none = { NULL, NULL };
		finish(r, &none, err);
		return;
	}
	r->building = true;
	r->builds++;
	pthread_mutex_lock(&r->mu);
	r->job = copy;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

/** A build is over: apply it, answer its waiters, start the queued one. */
static void finish(struct reload *r, struct reload_pair *pair, const char *build_err)
{
	char err[1024];

	snprintf(err, sizeof(err), "%s", build_err);
	r->building = false;
	int rc = r->apply(r->arg, pair, err, sizeof(err));
	discard(r, pair);
	struct reload_waiter *list = r->waiters;
	r->waiters = NULL;
	if (r->queued) {
		/* Asked while this one built: it may have read the files before
		 * they changed, so the queued request gets a build of its own. */
		char *path = r->queued;
		r->queued = NULL;
		r->waiters = r->queued_waiters;
		r->queued_waiters = NULL;
		start(r, path);
		free(path);
	}
	answer(list, rc, err);
}

static void finished_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	struct reload *r = w->data;
	struct reload_pair pair;
	char err[sizeof(r->result_err)];
	(void)loop;
	(void)revents;

	pthread_mutex_lock(&r->mu);
	if (!r->finished) {
		pthread_mutex_unlock(&r->mu);
		return;
	}
	pair = r->result;
	memcpy(err, r->result_err, sizeof(err));
	r->finished = false;
	pthread_mutex_unlock(&r->mu);
	finish(r, &pair, err);
}

struct reload *reload_new(struct ev_loop *loop, reload_apply_fn apply, void *arg)
{
	struct reload *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	/* A policy is built in one thread and freed in another, a reload
	 * later.  glibc raises its mmap threshold each time such a block is
	 * freed, after which the next build's tables come from the thread's
	 * heap and stay in RSS once freed; a fixed threshold keeps every big
	 * table a mapping of its own, given back whole when freed. */
	mallopt(M_MMAP_THRESHOLD, 256 * 1024);
	r->loop = loop;
	r->apply = apply;
	r->arg = arg;
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	ev_async_init(&r->finished_w, finished_cb);
	r->finished_w.data = r;
	ev_async_start(loop, &r->finished_w);
	return r;
}

void reload_request(struct reload *r, const char *path, struct reload_waiter *w)
{
	if (!r->building) {
		if (w) {
			w->next = r->waiters;
			r->waiters = w;
		}
		start(r, path);
		return;
	}
	if (w) {
		w->next = r->queued_waiters;
		r->queued_waiters = w;
	}
	if (!r->queued) {
		if (!(r->queued = strdup(path))) {
			/* Cannot queue it: the one building answers them all. */
			for (struct reload_waiter **pp = &r->waiters; ; pp = &(*pp)->next)
				if (!*pp) {
					*pp = r->queued_waiters;
					break;
				}
			r->queued_waiters = NULL;
			return;
		}
		log_info("reload: one is being built; this one follows it");
	}
}

static bool unlink_waiter(struct reload_waiter **pp, struct reload_waiter *w)
{
	for (; *pp; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			return true;
		}
	return false;
}

void reload_forget(struct reload *r, struct reload_waiter *w)
{
	if (r && !unlink_waiter(&r->waiters, w))
		unlink_waiter(&r->queued_waiters, w);
}

bool reload_busy(const struct reload *r)
{
	return r && r->building;
}

unsigned long reload_builds(const struct reload *r)
{
	return r ? r->builds : 0;
}

void reload_free(struct reload *r)
{
	if (!r)
		return;
	if (r->thread_on) {
		struct timespec until;
		pthread_mutex_lock(&r->mu);
		r->quit = true;
		free(r->job);        /* not started: not wanted any more */
		r->job = NULL;
		pthread_cond_signal(&r->cv);
		pthread_mutex_unlock(&r->mu);
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += JOIN_WAIT_S;
		if (pthread_timedjoin_np(r->thread, NULL, &until) != 0) {
			/* It still uses r: r stays, and the thread ends with the process. */
			log_warn("reload: a build is still reading its files at exit; not waited for");
			ev_async_stop(r->loop, &r->finished_w);
			return;
		}
	}
	ev_async_stop(r->loop, &r->finished_w);
	if (r->finished)
		pair_free(&r->result);
	for (struct trash *t = r->trash, *next; t; t = next) {
		next = t->next;
		pair_free(&t->pair);
		free(t);
	}
	free(r->job);
	free(r->queued);
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mu);
	free(r);
}
