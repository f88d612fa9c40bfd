/**
 * \file query.h
 * One client query from packet to answer: parse, access check, policy,
 * local and denied answers, cache hit, or hand-off to upstream.  query
 * keeps the clients that wait for upstream and sends every answer they
 * get: upstream hands each question back through one callback with its
 * outcome, and query checks the answer's targets, decides what is cached,
 * and answers, from stale where the question is late or failed.
 */
#ifndef ACRDNS_QUERY_H
#define ACRDNS_QUERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache.h"
#include "policy.h"
#include "wire.h"

struct reply_to;
struct server;

/** Handle one query message from a client. */
void query_handle(struct server *s, const uint8_t *msg, size_t len, struct reply_to *rt);

/**
 * A listener's handler (listener_handler): count the query by transport,
 * then query_handle().  arg is the struct server.
 */
void query_listener_handle(void *arg, const uint8_t *msg, size_t len, struct reply_to *rt);

/**
 * The part of query_handle() a worker thread runs on its own: cache hits,
 * denied and local names.  Counts only what it answers.
 * @return true when answered; false: the main loop must handle the packet
 */
bool query_fast(struct server *s, const uint8_t *msg, size_t len, struct reply_to *rt);

/**
 * Resolve a name into the cache with no client waiting (a new endpoint,
 * resolved ahead of the first pull).  Nothing happens when it is cached.
 */
void query_prefetch(struct server *s, const uint8_t *name, size_t len, uint16_t qtype);

/** How the targets in an answer stand against the policy. */
enum chain_check {
	CHAIN_CLEAN,        /**< every target is allowed or passed */
	CHAIN_DENIED,       /**< a target is denied */
	CHAIN_UNREADABLE,   /**< a target cannot be decoded: treated as denied */
	CHAIN_BLOCKED,      /**< the chain reaches a ".invalid" name: blocked upstream */
};

/**
 * Check the targets of a prepared (scrubbed) answer against the policy:
 * CNAME and DNAME targets, the question as a DNAME rewrites it (RFC 6672
 * 2.2), SVCB/HTTPS TargetNames and SRV, MX and NAPTR targets, in every
 * section.  A target this decoder refuses (a forward or overlong
 * compression pointer, a name that overruns its record) is one that a
 * client might still decode and follow, so it counts as denied.  A chain
 * that reaches a ".invalid" name is CHAIN_BLOCKED, whatever the policy.
 * @param d receives the decision for the first denied target (VERDICT_AUDIT
 *        in audit mode, where the result is CHAIN_DENIED all the same)
 * @param target receives that target, or the ".invalid" name (WIRE_NAME_MAX + 3 bytes)
 */
enum chain_check query_chain_check(const struct server *s, const struct cache_answer *a,
				   struct policy_decision *d, uint8_t *target);

#endif
