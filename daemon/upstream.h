/**
 * \file upstream.h
 * Sending cache misses to the upstream servers.  Identical questions in
 * flight are sent once.  Every attempt has a socket of its own while it
 * waits (a random source port, taken from a small pool of such sockets
 * that each serve a few questions one after another) and a random ID, and
 * a reply is accepted only from the server asked (a connected socket),
 * with that ID and that question.  Timeouts retry
 * with backoff, moving to the server with the best smoothed RTT; a
 * truncated reply is retried over TCP, and one that rejects EDNS (FORMERR
 * or NOTIMP without OPT) is retried at once without it.
 *
 * Upstream answers no client itself.  A question is started with a
 * callback and an argument (as unbound's outnet_serviced_query), and the
 * callback is told how it went: an answer, late (UPSTREAM_PATIENCE passed,
 * a stale answer may be served while the question goes on), or failed.
 * The clients waiting for a question are a list that the caller keeps in
 * the question's waiters slot; upstream stores it and hands it back, and
 * never reads it.
 */
#ifndef ACRDNS_UPSTREAM_H
#define ACRDNS_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include "cache.h"
#include "config.h"
#include "upstream_servers.h"   /* upstream_counters, upstream_read_resolv() */

struct server;
struct upstreams;

/** Serve a stale answer when no upstream answered within this (RFC 8767: 1.8 s). */
#define UPSTREAM_PATIENCE 1.8
/** Give up (UPSTREAM_FAILED) this long after the question. */
#define UPSTREAM_DEADLINE 3.0
/**
 * Most questions in flight at once for one zone's servers (`upstreams`, or
 * a forward zone).  Each holds up to eight sockets for up to
 * UPSTREAM_DEADLINE; past this a new question is refused at once (the
 * caller answers stale or SERVFAIL), so a flood of unique names at a dead
 * upstream cannot exhaust memory or file descriptors, nor take another
 * zone's share.
 */
#define UPSTREAM_MAX_INFLIGHT 10000

/** @return the upstream state for a server, or NULL when out of memory. */
struct upstreams *upstream_new(struct server *srv);

/** Abandon every question in flight (shutdown) and free. */
void upstream_free(struct upstreams *u);

/**
 * Take the server lists from a configuration: `upstreams` and each
 * `forward` zone's, each of addresses and the nameservers of file:
 * entries, watched for changes.  Addresses that the configuration listens
 * on are skipped with a warning.  Servers and zones that stay keep their
 * state; a question goes to the most specific zone holding its name.
 * @return 0, or -1 with err set (out of memory)
 */
int upstream_configure(struct upstreams *u, const struct config *cfg, char *err, size_t errlen);

/** @return number of usable servers of `upstreams` (forward zones not counted). */
size_t upstream_count(const struct upstreams *u);

/** @return number of usable servers for the zone a wire name goes to. */
size_t upstream_zone_count(const struct upstreams *u, const uint8_t *name, size_t len);

/**
 * Call fn(arg) after every rebuild of the server list (start, reload, a
 * file: list that changed), so that loop detection checks the new list.
 */
void upstream_on_rebuild(struct upstreams *u, void (*fn)(void *arg), void *arg);

/**
 * Stop using addr until the list is next rebuilt (it leads back to us).
 * Questions waiting on it move on to the other servers at their next try.
 */
void upstream_drop(struct upstreams *u, const struct cfg_addr *addr);

/**
 * @param zone "." for `upstreams`, else the forward zone ("privatelink.azurecr.io")
 */
typedef void (*upstream_each_cb)(void *arg, const char *zone, const struct cfg_addr *addr,
				 const struct upstream_counters *n);

/**
 * Call cb for each server in use, `upstreams` first, then each forward
 * zone's in configuration order.  A server in two zones is told twice.
 */
void upstream_each(const struct upstreams *u, upstream_each_cb cb, void *arg);

/**
 * Where a name would go: call cb (may be NULL) for each server of the
 * most specific zone holding it.
 * @param name an uncompressed wire name of len bytes
 * @return the zone: "." for `upstreams`
 */
const char *upstream_route(const struct upstreams *u, const uint8_t *name, size_t len,
			   upstream_each_cb cb, void *arg);

/** @return number of questions in flight. */
size_t upstream_inflight(const struct upstreams *u);

/** @return UDP sockets open to the servers, of which *idle wait in the pools. */
size_t upstream_sockets(const struct upstreams *u, size_t *idle);

/** How a question stands when upstream hands it back. */
enum upstream_outcome {
	UPSTREAM_ANSWER,    /**< a usable reply, prepared as a cache_answer; the question ends */
	UPSTREAM_LATE,      /**< UPSTREAM_PATIENCE passed: stale answers may go; the question goes on */
	UPSTREAM_FAILED,    /**< nothing usable by UPSTREAM_DEADLINE, or nothing left to try; it ends */
	UPSTREAM_ABANDONED, /**< the daemon shuts down; it ends */
};

/** Why a question failed: for the log and the client's Extended DNS Error. */
struct upstream_failure {
	uint16_t ede;     /**< RFC 8914: 22 No Reachable Authority, 23 Network Error (0 shutdown) */
	char text[96];    /**< what happened, e.g. "upstream 192.0.2.1#53 answered REFUSED" */
};

/**
 * Told how a question went.
 * @param arg the argument given to upstream_resolve() when the question started
 * @param key the question
 * @param answer the reply for UPSTREAM_ANSWER (valid during the call), else NULL
 * @param why for UPSTREAM_FAILED and UPSTREAM_ABANDONED, what went wrong
 *        (valid during the call), else NULL
 * @param waiters the question's waiters slot.  When the question ends the
 *        callback must take every waiter; after UPSTREAM_LATE it may leave
 *        some there.  The question has left the in-flight table when it
 *        ends, so the callback may start it anew.
 */
typedef void (*upstream_done_fn)(void *arg, enum upstream_outcome outcome,
				 const struct cache_key *key, const struct cache_answer *answer,
				 const struct upstream_failure *why, void **waiters);

/**
 * Find the question key in flight, or start it.  A question joined keeps
 * the done and arg it started with.
 * @param late set when the question joined has passed UPSTREAM_PATIENCE:
 *        its UPSTREAM_LATE has been told already
 * @return the question's waiters slot (initially NULL), valid until done
 *         says the question ended; or NULL when it cannot be asked (no
 *         server, too many in flight, no socket, no memory): the caller
 *         answers at once
 */
void **upstream_resolve(struct upstreams *u, const struct cache_key *key, upstream_done_fn done,
			void *arg, bool *late);

#endif
