/**
 * \file upstream.h
 * Sending cache misses to the upstream servers.  Identical questions in
 * flight are sent once.  Every attempt has a socket of its own while it
 * waits (a random source port, taken from a small pool of such sockets
 * that each serve a few questions one after another) and a random ID, and
 * a reply is accepted only from the server asked (a connected socket),
 * with that ID and that question.  Timeouts retry
 * with backoff, moving to the server with the best smoothed RTT; a
 * truncated reply is retried over TCP.  When nothing usable arrives, a
 * stale answer is served after CLIENT_PATIENCE (RFC 8767), and at the
 * deadline the clients get the stale answer or SERVFAIL.
 */
#ifndef ACRDNS_UPSTREAM_H
#define ACRDNS_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include "cache.h"
#include "config.h"

struct server;
struct query_client;
struct upstreams;

/** Serve a stale answer when no upstream answered within this (RFC 8767: 1.8 s). */
#define UPSTREAM_PATIENCE 1.8
/** Give up and answer SERVFAIL (or stale) this long after the question. */
#define UPSTREAM_DEADLINE 3.0
/**
 * Most questions in flight at once.  Each holds up to eight sockets for up
 * to UPSTREAM_DEADLINE; past this a new question gets SERVFAIL (or a stale
 * answer) at once, so a flood of unique names at a dead upstream cannot
 * exhaust memory or file descriptors.
 */
#define UPSTREAM_MAX_INFLIGHT 10000

/** @return the upstream state for a server, or NULL when out of memory. */
struct upstreams *upstream_new(struct server *srv);

/** Abandon every question in flight (shutdown) and free. */
void upstream_free(struct upstreams *u);

/**
 * Take the server list from a configuration: addresses, and the
 * nameservers of each file: entry, watched for changes.  Addresses that
 * the configuration listens on are skipped with a warning.
 * @return 0, or -1 with err set (a file that cannot be watched)
 */
int upstream_configure(struct upstreams *u, const struct config *cfg, char *err, size_t errlen);

/** @return number of usable servers. */
size_t upstream_count(const struct upstreams *u);

/** Upper bounds (seconds) of the upstream RTT histogram's buckets, +Inf excluded. */
#define UPSTREAM_RTT_BUCKETS 11
extern const double upstream_rtt_bounds[UPSTREAM_RTT_BUCKETS];

/** What one upstream server has done since it was first configured. */
struct upstream_counters {
	uint64_t sent;                /**< attempts sent */
	uint64_t replies;             /**< replies with our question, any RCODE */
	uint64_t timeouts;            /**< attempts given up on */
	uint64_t errors;              /**< unreachable, refused, SERVFAIL, unusable */
	uint64_t rtt_buckets[UPSTREAM_RTT_BUCKETS + 1]; /**< per bucket, not cumulative; last: +Inf */
	double rtt_sum;
};

typedef void (*upstream_each_cb)(void *arg, const struct cfg_addr *addr,
				 const struct upstream_counters *n);

/** Call cb for each server in use, in order. */
void upstream_each(const struct upstreams *u, upstream_each_cb cb, void *arg);

/** @return number of questions in flight. */
size_t upstream_inflight(const struct upstreams *u);

/** @return UDP sockets open to the servers, of which *idle wait in the pools. */
size_t upstream_sockets(const struct upstreams *u, size_t *idle);

/**
 * Resolve key for a waiting client: join the identical question in
 * flight or send a new one.  The client is answered through query.c.
 */
void upstream_resolve(struct upstreams *u, const struct cache_key *key, struct query_client *c);

/**
 * Parse the nameserver lines of a resolv.conf-style file.
 * @param out receives a malloc'd array
 * @return number of addresses, or -1 when the file cannot be read
 */
int upstream_read_resolv(const char *path, struct cfg_addr **out);

#endif
