/**
 * \file server.h
 * The running daemon's state, shared by the listener, query and upstream
 * modules.  One per process; everything runs on its one event loop.
 */
#ifndef ACRDNS_SERVER_H
#define ACRDNS_SERVER_H

#include <ev.h>
#include <stdint.h>
#include <time.h>

#include "cache.h"
#include "config.h"
#include "policy.h"
#include "stats.h"

struct control;
struct discovery;
struct failcache;
struct listener;
struct loopdetect;
struct metrics_http;
struct nft;
struct reload;
struct upstreams;
struct workers;

struct server {
	struct ev_loop *loop;
	struct config *cfg;
	struct policy *policy;
	uint32_t policy_gen;          /**< bumped at every policy swap */
	struct cache *cache;
	struct cache_ttl ttl;
	struct failcache *fails;      /**< questions that failed upstream (main loop only) */
	struct upstreams *up;
	struct loopdetect *loopdetect; /**< NULL in a worker's shadow: probes go to the main loop */
	struct discovery *disc;
	struct ratelimit *rl;         /**< NULL: no rate limit */
	struct control *ctl;
	struct audit *audit;          /**< what audit mode saw; the process's, kept across reloads */
	struct nft *nft;              /**< NULL: no nftables sets to fill */
	struct metrics_http *metrics; /**< NULL: no HTTP metrics listener */
	bool activated;               /**< started with sockets from socket activation */
	struct workers *workers;      /**< NULL: the main loop alone (workers = 1) */
	bool main_nft;                /**< in a worker's shadow: the main loop fills nftables sets */
	ev_tstamp started;
	struct reload *reloads;       /**< builds new configurations off the loop */
	unsigned long names_builds;   /**< registries' names built for a discovery change */
	struct loopstall *stall;      /**< times the main loop's rounds */
	struct listener *listeners;
	unsigned tcp_conns;
	struct stats stats;
	struct cache_answer answer;   /**< scratch: one upstream reply at a time */
	uint8_t out[65536 + 2];       /**< scratch: one reply being written */
};

/** Monotonic milliseconds: TTLs must not jump with the wall clock. */
static inline uint64_t server_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

#endif
