/**
 * \file saver.c
 * The thread that writes discovery's state files, and the loop's side of
 * it.  A queue of jobs under one mutex, at most one per registry: a newer
 * list replaces the list of a job not yet taken, so the thread never
 * writes a state older than one it wrote before, and a burst of changes
 * costs one or two writes.  Failures go back to the loop through an
 * ev_async, to be logged there (the loop owns the log settings).
 */
#include "autoconf.h"

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saver.h"

struct job {
	struct job *next;
	char *dir;
	char *login;
	char **list;
};

struct failure {
	struct failure *next;
	char *login;
	char why[512];
};

struct saver {
	struct ev_loop *loop;
	saver_write_fn write;
	saver_failed_fn failed;
	void *arg;
	ev_async failed_w;
	pthread_t thread;
	bool thread_on;

	pthread_mutex_t mu;           /**< guards the members below */
	pthread_cond_t cv;
	struct job *head, **tail;     /**< waiting, oldest first */
	size_t pending;               /**< waiting or being written */
	struct failure *failures;     /**< for the loop to log */
	bool quit;
};

static void list_free(char **list)
{
	for (char **p = list; p && *p; p++)
		free(*p);
	free(list);
}

static void job_free(struct job *j)
{
	if (!j)
		return;
	free(j->dir);
	free(j->login);
	list_free(j->list);
	free(j);
}

static char **list_copy(char *const *list)
{
	size_t n = 0;

	while (list[n])
		n++;
	char **copy = calloc(n + 1, sizeof(*copy));
	for (size_t i = 0; copy && i < n; i++)
		if (!(copy[i] = strdup(list[i]))) {
			list_free(copy);
			return NULL;
		}
	return copy;
}

/** Under the lock, in the thread: keep a failure for the loop. */
static void report(struct saver *sv, const struct job *j, const char *why)
{
	struct failure *f = calloc(1, sizeof(*f));

	if (!f || !(f->login = strdup(j->login))) {
		free(f);
		return;   /* out of memory: the failure goes unlogged, the next save retries */
	}
	snprintf(f->why, sizeof(f->why), "%s", why);
	f->next = sv->failures;
	sv->failures = f;
	ev_async_send(sv->loop, &sv->failed_w);
}

static void *run(void *arg)
{
	struct saver *sv = arg;

	pthread_mutex_lock(&sv->mu);
	for (;;) {
		if (sv->head) {
			struct job *j = sv->head;
			char why[512] = "";
			if (!(sv->head = j->next))
				sv->tail = &sv->head;
			pthread_mutex_unlock(&sv->mu);
			int rc = sv->write(j->dir, j->login, j->list, why, sizeof(why));
			pthread_mutex_lock(&sv->mu);
			if (rc < 0)
				report(sv, j, why);
			sv->pending--;
			job_free(j);
			continue;
		}
		if (sv->quit)
			break;
		pthread_cond_wait(&sv->cv, &sv->mu);
	}
	pthread_mutex_unlock(&sv->mu);
	return NULL;
}

static void deliver(struct saver *sv)
{
	pthread_mutex_lock(&sv->mu);
	struct failure *list = sv->failures;
	sv->failures = NULL;
	pthread_mutex_unlock(&sv->mu);
	/* Reported newest first: log them in the order they happened. */
	struct failure *rev = NULL;
	while (list) {
		struct failure *f = list;
		list = f->next;
		f->next = rev;
		rev = f;
	}
	while (rev) {
		struct failure *f = rev;
		rev = f->next;
		sv->failed(sv->arg, f->login, f->why);
		free(f->login);
		free(f);
	}
}

static void failed_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	(void)loop;
	(void)revents;
	deliver(w->data);
}

struct saver *saver_new(struct ev_loop *loop, saver_write_fn write, saver_failed_fn failed,
			void *arg)
{
	struct saver *sv = calloc(1, sizeof(*sv));

	if (!sv)
		return NULL;
	sv->loop = loop;
	sv->write = write;
	sv->failed = failed;
	sv->arg = arg;
	sv->tail = &sv->head;
	pthread_mutex_init(&sv->mu, NULL);
	pthread_cond_init(&sv->cv, NULL);
	ev_async_init(&sv->failed_w, failed_cb);
	sv->failed_w.data = sv;
	ev_async_start(loop, &sv->failed_w);
	return sv;
}

static bool start_thread(struct saver *sv)
{
	sigset_t all, old;

	/* Signals are the loop's: the thread starts with them blocked. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	sv->thread_on = pthread_create(&sv->thread, NULL, run, sv) == 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return sv->thread_on;
}

void saver_save(struct saver *sv, const char *state_dir, const char *login,
		char *const *endpoints)
{
	struct job *j = calloc(1, sizeof(*j));

	if (!j || !(j->dir = strdup(state_dir)) || !(j->login = strdup(login)) ||
	    !(j->list = list_copy(endpoints)) || (!sv->thread_on && !start_thread(sv))) {
		/* Written late is worse than written slowly: do it here. */
		char why[512];
		job_free(j);
		if (sv->write(state_dir, login, endpoints, why, sizeof(why)) < 0)
			sv->failed(sv->arg, login, why);
		return;
	}
	pthread_mutex_lock(&sv->mu);
	for (struct job *w = sv->head; w; w = w->next)
		if (strcmp(w->login, login) == 0 && strcmp(w->dir, state_dir) == 0) {
			/* Not taken yet: the newer list is the one to write. */
			char **old = w->list;
			w->list = j->list;
			j->list = old;
			pthread_mutex_unlock(&sv->mu);
			job_free(j);
			return;
		}
	*sv->tail = j;
	sv->tail = &j->next;
	sv->pending++;
	pthread_cond_signal(&sv->cv);
	pthread_mutex_unlock(&sv->mu);
}

size_t saver_pending(struct saver *sv)
{
	pthread_mutex_lock(&sv->mu);
	size_t n = sv->pending;
	pthread_mutex_unlock(&sv->mu);
	return n;
}

void saver_free(struct saver *sv)
{
	if (!sv)
		return;
	if (sv->thread_on) {
		/* The thread empties the queue before it looks at quit. */
		pthread_mutex_lock(&sv->mu);
		sv->quit = true;
		pthread_cond_signal(&sv->cv);
		pthread_mutex_unlock(&sv->mu);
		pthread_join(sv->thread, NULL);
	}
	ev_async_stop(sv->loop, &sv->failed_w);
	deliver(sv);
	pthread_cond_destroy(&sv->cv);
	pthread_mutex_destroy(&sv->mu);
	free(sv);
}
