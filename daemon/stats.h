/**
 * \file stats.h
 * Counters the daemon keeps about itself, one set per event loop, bumped
 * on the query path with STAT_INC(); written to the log on SIGUSR1 and at
 * shutdown.
 */
#ifndef ACRDNS_STATS_H
#define ACRDNS_STATS_H

#include <stddef.h>
#include <stdint.h>

/** Verdicts counted per transport: enum verdict's VERDICT_COUNT (policy.h). */
#define STATS_VERDICTS 5

struct stats {
	uint64_t queries_udp, queries_tcp;
	uint64_t dropped;             /**< no header, or a response sent to us */
	uint64_t formerr, notimp, badvers, refused_access, refused_class;
	uint64_t allowed, passed, denied, local;
	uint64_t cname_denied;
	uint64_t upstream_blocked;    /**< answers whose chain reaches a .invalid name */
	uint64_t scrubbed;            /**< records removed from upstream answers */
	uint64_t audited;             /**< audit mode: questions the policy would have denied */
	uint64_t cache_hits, cache_misses, stale_served, servfail;
	uint64_t refused_norec;       /**< RD=0 and not in the cache */
	uint64_t failure_cached;      /**< SERVFAIL at once: the question failed lately (RFC 9520) */
	uint64_t truncated;
	uint64_t merged;              /**< joined an identical question in flight */
	uint64_t upstream_sent, upstream_tcp, upstream_timeouts, upstream_errors;
	uint64_t upstream_bogus;      /**< replies dropped: wrong ID, question or garbage */
	uint64_t tcp_refused;         /**< connections closed at a cap */
	uint64_t rate_limited;
	uint64_t inflight_full;       /**< SERVFAIL because UPSTREAM_MAX_INFLIGHT were waiting */
	uint64_t send_errors;
	uint64_t upstream_loops;      /**< upstream servers found to lead back to us */
	uint64_t verdicts[2][STATS_VERDICTS]; /**< [udp, tcp][enum verdict]; not in stats_fields */
};

/** Each counter's name and place, in the order they are shown. */
struct stats_field {
	const char *name;
	size_t offset;
};
extern const struct stats_field stats_fields[];

/*
 * A worker thread bumps its own counters while the main loop sums them for
 * the log, the control socket and the metrics.  Relaxed atomic loads and
 * stores make that sum well defined and cost what ++ costs: each counter
 * has one writer.  send_errors has two (the main loop answers questions a
 * worker handed over, on the worker's socket): it adds atomically.
 */
#define STAT_ADD(field, n) \
	__atomic_store_n(&(field), __atomic_load_n(&(field), __ATOMIC_RELAXED) + (n), __ATOMIC_RELAXED)
#define STAT_INC(field) STAT_ADD(field, 1)
#define STAT_ADD_SHARED(field, n) ((void)__atomic_fetch_add(&(field), (n), __ATOMIC_RELAXED))

/** @return the value of field f in s. */
static inline uint64_t stats_get(const struct stats *s, const struct stats_field *f)
{
	return __atomic_load_n((const uint64_t *)(const void *)((const char *)s + f->offset),
			       __ATOMIC_RELAXED);
}

/** Add every counter of s to sum. */
void stats_add(struct stats *sum, const struct stats *s);

/** Write every counter to the log at notice level, as one key=value line. */
void stats_log(const struct stats *s);

#endif
