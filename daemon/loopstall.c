/**
 * \file loopstall.c
 * The loop's longest round of callbacks.  libev sets ev_now() when poll
 * returns, before any callback of the round runs, and calls prepare
 * watchers before it polls again: the clock read in a prepare watcher,
 * less ev_now(), is the time the round took, with every callback in it.
 */
#include "autoconf.h"

#include <stdbool.h>
#include <stdlib.h>

#include "log.h"
#include "loopstall.h"

struct loopstall {
	ev_prepare prepare;
	struct ev_loop *loop;
	double max;
	bool started;                 /**< past the first prepare: ev_now() is a poll's */
};

static void prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	struct loopstall *ls = w->data;
	(void)revents;

	if (!ls->started) {
		/* Before the first poll, ev_now() is as old as the start-up. */
		ls->started = true;
		return;
	}
	double took = ev_time() - ev_now(loop);
	if (took > ls->max)
		ls->max = took;
	if (took * 1e3 > LOOPSTALL_LOG_MS)
		log_debug("loop: one round of callbacks took %.1f ms; answers waited as long", took * 1e3);
}

struct loopstall *loopstall_new(struct ev_loop *loop)
{
	struct loopstall *ls = calloc(1, sizeof(*ls));

	if (!ls)
		return NULL;
	ls->loop = loop;
	ev_prepare_init(&ls->prepare, prepare_cb);
	ls->prepare.data = ls;
	/* Last of the prepare watchers: theirs is work of the round too. */
	ev_set_priority(&ls->prepare, EV_MINPRI);
	ev_prepare_start(loop, &ls->prepare);
	/* Not a reason to keep the loop running. */
	ev_unref(loop);
	return ls;
}

double loopstall_max(const struct loopstall *ls)
{
	return ls ? ls->max : 0;
}

void loopstall_free(struct loopstall *ls)
{
	if (!ls)
		return;
	ev_ref(ls->loop);
	ev_prepare_stop(ls->loop, &ls->prepare);
	free(ls);
}
