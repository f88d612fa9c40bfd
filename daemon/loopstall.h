/**
 * \file loopstall.h
 * How long the main event loop goes without looking at its sockets.  Each
 * round of callbacks (from the moment poll returns to the next poll) is
 * timed; the longest since start is kept for the metrics, and a round past
 * LOOPSTALL_LOG_MS is logged at debug level, so that an answer delayed by
 * the daemon's own work (a reload, a discovery change) can be told apart
 * from one delayed by a busy machine.  Costs one clock read per round.
 */
#ifndef ACRDNS_LOOPSTALL_H
#define ACRDNS_LOOPSTALL_H

#include <ev.h>

/** Rounds longer than this many milliseconds are logged (debug). */
#define LOOPSTALL_LOG_MS 5.0

struct loopstall;

/** Start timing loop's rounds. @return the watch, or NULL when out of memory */
struct loopstall *loopstall_new(struct ev_loop *loop);

/** @return the longest round since start, in seconds (0 for NULL). */
double loopstall_max(const struct loopstall *ls);

/** Stop timing and free; NULL is allowed. */
void loopstall_free(struct loopstall *ls);

#endif
