/**
 * \file ratelimit.h
 * Per-client query rate limits: a token bucket per address (per /64 for
 * IPv6, where one host holds a whole prefix), in a table of fixed size so
 * that a flood of spoofed sources cannot make it grow.  No sockets here.
 */
#ifndef ACRDNS_RATELIMIT_H
#define ACRDNS_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct ratelimit;

/**
 * @param qps tokens added per second
 * @param burst bucket size
 * @param slots table size (rounded up to a power of two)
 * @return the limiter, or NULL when out of memory
 */
struct ratelimit *ratelimit_new(uint32_t qps, uint32_t burst, uint32_t slots);
void ratelimit_free(struct ratelimit *rl);

/** @return true when the client may be answered now (and take a token). */
bool ratelimit_allow(struct ratelimit *rl, const struct sockaddr *client, uint64_t now_ms);

#endif
