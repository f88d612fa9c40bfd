/**
 * \file reload.h
 * Reloads built off the event loop.  A reload reads the configuration and
 * builds its policy (libconfig and the rule table are pure) in a thread,
 * while the loop keeps answering with the running pair; the loop then
 * makes the finished pair live, which costs a pointer swap, not a rebuild.
 *
 * One build at a time: a reload asked while one builds runs once more
 * after it, however many were asked meanwhile, so that the last request
 * always sees the files as they were when it was made and a burst of
 * SIGHUPs costs two builds, not one per signal.  The pair a swap replaced
 * is freed by the thread as well: giving back a million-rule table takes
 * the loop milliseconds it has no reason to spend.
 */
#ifndef ACRDNS_RELOAD_H
#define ACRDNS_RELOAD_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>

struct config;
struct policy;
struct reload;

/** A configuration and the policy built from it (the policy borrows from it). */
struct reload_pair {
	struct config *cfg;
	struct policy *policy;
};

/** One who waits for a reload's outcome, such as an acrdnsctl connection. */
struct reload_waiter {
	struct reload_waiter *next;
	/**
	 * On the loop, once a configuration read after the request is live
	 * (rc 0) or has failed (rc -1, err says why).  w may be freed here.
	 */
	void (*done)(struct reload_waiter *w, int rc, const char *err);
};

/**
 * On the loop, with a finished build: make it live.  pair holds the new
 * configuration and policy, or NULLs when the build failed (err then says
 * why).  Must leave in pair what is to be freed: the replaced pair after a
 * swap, or the refused one.
 * @return 0 when the new pair is live, or -1 with err set
 */
typedef int (*reload_apply_fn)(void *arg, struct reload_pair *pair, char *err, size_t errlen);

/**
 * @param apply called on loop with each finished build
 * @return the reloader (its thread starts with the first reload), or NULL
 *         when out of memory
 */
struct reload *reload_new(struct ev_loop *loop, reload_apply_fn apply, void *arg);

/**
 * Ask for a reload of the configuration at path: start a build now, or
 * after the one running.  w (NULL for none) hears the outcome; it may hear
 * it before this returns, when the reload cannot even start.
 */
void reload_request(struct reload *r, const char *path, struct reload_waiter *w);

/** Forget a waiter that goes away before its reload is done. */
void reload_forget(struct reload *r, struct reload_waiter *w);

/** @return true while a build runs or is queued. */
bool reload_busy(const struct reload *r);

/** @return the builds started since reload_new (each reads every rule again). */
unsigned long reload_builds(const struct reload *r);

/**
 * Stop the thread and free.  A build stuck reading (a FIFO nobody
 * writes) is not waited for past a moment: the process is exiting.
 */
void reload_free(struct reload *r);

#endif
