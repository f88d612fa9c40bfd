/**
 * \file query.h
 * One client query from packet to answer: parse, access check, policy,
 * local and denied answers, cache hit, or hand-off to upstream; and the
 * answers that upstream completes later.
 */
#ifndef ACRDNS_QUERY_H
#define ACRDNS_QUERY_H

#include <stddef.h>
#include <stdint.h>

#include "cache.h"
#include "listener.h"
#include "policy.h"
#include "wire.h"

struct server;

/** A client waiting for upstream; owned by the in-flight question it joined. */
struct query_client {
	struct query_client *next;
	struct reply_to rt;
	struct wire_query q;
	enum verdict verdict;
};

/** Handle one query message from a client. */
void query_handle(struct server *s, const uint8_t *msg, size_t len, struct reply_to *rt);

/**
 * Deliver an upstream answer (or a stale one) to a waiting client, then
 * free it.  The answer's CNAME chain was already checked.
 */
void query_answer(struct server *s, struct query_client *c, const struct cache_msg *m,
		  uint32_t age, bool stale);

/** As query_answer(), for an answer already rendered into s->out. */
void query_answer_rendered(struct server *s, struct query_client *c, size_t len, bool stale);

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

/** Answer a waiting client with SERVFAIL, then free it. */
void query_fail(struct server *s, struct query_client *c);

/**
 * Answer a waiting client as denied because its answer's CNAME chain
 * runs into a denied name, then free it.
 */
void query_deny_chain(struct server *s, struct query_client *c, const struct policy_decision *d,
		      const uint8_t *target);

/**
 * Check a prepared answer's CNAME and DNAME targets against the policy.
 * @param d receives the decision for the first denied target
 * @param target receives that target (256 bytes)
 * @return true when a target is denied
 */
bool query_chain_denied(const struct server *s, const struct cache_answer *a,
			struct policy_decision *d, uint8_t *target);

#endif
