/**
 * \file upstream_servers.h
 * The upstream servers in use: the configured addresses and the
 * nameservers of each resolv.conf-style file (re-read when it changes),
 * with each server's smoothed RTT (RFC 6298), its counters and its socket
 * pool.  A server's state survives a reload that keeps it.
 */
#ifndef ACRDNS_UPSTREAM_SERVERS_H
#define ACRDNS_UPSTREAM_SERVERS_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "upstream_pool.h"

struct server;

#define UPSTREAM_RTO_UNKNOWN 0.4   /**< seconds, for a server with no RTT sample yet */
#define UPSTREAM_RTO_MIN 0.05
#define UPSTREAM_RTO_MAX 1.5
#define UPSTREAM_RTT_FORGET 30.0   /**< a penalised server is given another chance after this */
/**
 * A server that rejected EDNS is asked without it for this long (seconds),
 * then probed with EDNS again: it may have been upgraded, or the rejection
 * came from a middlebox that has since gone (unbound keeps its EDNS
 * lameness in the infra cache for a similar while).
 */
#define UPSTREAM_NOEDNS_HOLD 900.0

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

struct upstream_server {
	struct cfg_addr addr;
	double srtt, rttvar;          /**< seconds */
	bool measured;
	ev_tstamp changed;
	struct upstream_counters n;
	struct upstream_pool *pool;   /**< moves with the server on rebuild */
	ev_tstamp noedns_until;       /**< before this, queries go without OPT (0: never rejected) */
};

struct upstream_servers {
	struct server *srv;
	const char *zone;             /**< for the log: NULL for `upstreams`, else a forward zone */
	struct upstream_server *list;
	size_t n;
	struct cfg_upstream *specs;   /**< copies, for re-reading files */
	size_t n_specs;
	struct cfg_addr *self;        /**< what we listen on */
	size_t n_self;
	ev_stat *watch;
	size_t n_watch;
	struct upstream_pools pools;
	void (*rebuilt)(void *arg);   /**< told after each rebuild (loop detection) */
	void *rebuilt_arg;
};

void upstream_servers_init(struct upstream_servers *sv, struct server *srv);

/** Stop watching files, close every pool, free the list. */
void upstream_servers_cleanup(struct upstream_servers *sv);

/**
 * Take the server list from specs (`upstreams`, or a forward zone's):
 * addresses, and the nameservers of each file: entry, watched for
 * changes; the addresses cfg listens on are skipped with a warning.
 * Servers that stay keep their RTT state, counters and pool.
 * @return 0, or -1 with err set
 */
int upstream_servers_configure(struct upstream_servers *sv, const struct cfg_upstream *specs,
			       size_t n_specs, const struct config *cfg, char *err, size_t errlen);

/**
 * Stop using addr until the list is next rebuilt (it leads back to us).
 * Questions waiting on it move on to the other servers at their next try.
 */
void upstream_servers_drop(struct upstream_servers *sv, const struct cfg_addr *addr);

/**
 * Would sending to addr reach one of the listen addresses (the same
 * address and port, or loopback when listening on the wildcard)?
 */
bool upstream_is_self(const struct cfg_addr *listen, size_t n_listen, const struct cfg_addr *addr);

/** @return the server at addr, or NULL: removed by a reload since. */
struct upstream_server *upstream_server_of(struct upstream_servers *sv, const struct cfg_addr *a);

/** Count a failed exchange with addr: unreachable, refused or unanswerable. */
void upstream_server_error(struct upstream_servers *sv, const struct cfg_addr *addr);

/** @return the retransmission timeout for s (NULL: unknown), in seconds. */
double upstream_server_rto(const struct upstream_server *s);

/** A reply after rtt seconds: the histogram and the smoothed RTT (s may be NULL). */
void upstream_server_sample(struct upstream_server *s, double rtt, ev_tstamp now);

/** @return whether a query to s goes with an OPT record at now (s may be NULL: yes). */
bool upstream_server_edns(const struct upstream_server *s, ev_tstamp now);

/**
 * s answered FORMERR or NOTIMP without OPT to a query with OPT, in a reply
 * that passed the source, ID and question checks: ask it without EDNS for
 * UPSTREAM_NOEDNS_HOLD seconds (s may be NULL).
 */
void upstream_server_noedns(struct upstream_server *s, ev_tstamp now);

/** No reply, or unreachable: the server looks slower (s may be NULL). */
void upstream_server_penalise(struct upstream_server *s, ev_tstamp now);

/**
 * Parse the nameserver lines of a resolv.conf-style file.
 * @param out receives a malloc'd array
 * @return number of addresses, or -1 when the file cannot be read
 */
int upstream_read_resolv(const char *path, struct cfg_addr **out);

#endif
