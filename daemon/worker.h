/**
 * \file worker.h
 * Extra event loops for the UDP fast path (`workers` > 1).  Each worker
 * thread has its own SO_REUSEPORT socket on every UDP listen address and
 * answers what needs no upstream and no shared mutable state but the
 * cache: cache hits (the cache is shared, behind its lock), denied and
 * local names.  Everything else (misses, TCP, rate limits, malformed
 * queries, nftables learning) is handed to the main loop, so in-flight
 * merging, upstream state, discovery and control stay single-threaded.
 * Reloads and policy changes stop the workers, swap, and start them again;
 * their sockets stay open meanwhile, so no query is lost.
 */
#ifndef ACRDNS_WORKER_H
#define ACRDNS_WORKER_H

#include <stddef.h>
#include <stdint.h>

#include "stats.h"

struct server;
struct workers;

/** @return the number of online CPUs (at least 1), what `workers = 0` asks for. */
unsigned workers_default(void);

/**
 * Prepare n - 1 worker threads beside the main loop (none when n <= 1).
 * @return the set, or NULL when n <= 1 or out of memory (logged)
 */
struct workers *workers_new(struct server *main, unsigned n);

/**
 * Open the workers' sockets on the main loop's UDP addresses now: before
 * the privilege drop, port 53 still binds.
 */
void workers_open(struct workers *ws);

/** Take the main loop's current configuration and policy and run. */
void workers_start(struct workers *ws);

/** Stop every worker thread and wait for it. */
void workers_stop(struct workers *ws);

/** Stop, close the workers' sockets and free. */
void workers_free(struct workers *ws);

/** Add the workers' counters to sum. */
void workers_add_stats(const struct workers *ws, struct stats *sum);

/** The main loop's counters plus every worker's. */
void workers_total(const struct server *s, struct stats *out);

/** @return worker threads running (0 without workers). */
size_t workers_count(const struct workers *ws);

#endif
