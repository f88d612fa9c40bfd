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

/** How the targets in an answer stand against the policy. */
enum chain_check {
	CHAIN_CLEAN,        /**< every target is allowed or passed */
	CHAIN_DENIED,       /**< a target is denied */
	CHAIN_UNREADABLE,   /**< a target cannot be decoded: treated as denied */
};

/**
 * Answer a waiting client as denied because a target in its answer is
 * denied (d and target say which) or cannot be read, then free it.
 */
void query_deny_chain(struct server *s, struct query_client *c, enum chain_check why,
		      const struct policy_decision *d, const uint8_t *target);

/**
 * Check the targets of a prepared answer against the policy: CNAME and
 * DNAME targets and SVCB/HTTPS TargetNames, in every section.  A target
 * this decoder refuses (a forward or overlong compression pointer, a name
 * that overruns its record) is one that a client might still decode and
 * follow, so it counts as denied.
 * @param d receives the decision for the first denied target
 * @param target receives that target (WIRE_NAME_MAX + 3 bytes)
 */
enum chain_check query_chain_check(const struct server *s, const struct cache_answer *a,
				   struct policy_decision *d, uint8_t *target);

#endif
