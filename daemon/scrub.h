/**
 * \file scrub.h
 * Answer scrubbing (RFC 2181 section 5.4.1, as unbound's iterator
 * scrubber does): an upstream answer keeps only what belongs to the
 * question.  The answer section keeps the question's chain (the question
 * name, the CNAME targets and DNAME rewrites it reaches, and the DNAMEs
 * that rewrite it); the authority section the SOA and NS of a zone
 * enclosing a chain name, and the DNSSEC proofs of that zone; the
 * additional section only the A and AAAA of names that a kept record
 * points to.  Records owned by names the policy denies go from the
 * authority and additional sections in every mode; an explicitly allowed
 * question's chain stays whatever the policy says of its names, because
 * Azure's own chains run through names that allowlist mode denies.
 *
 * Pure functions over wire messages: no sockets, no loop, no allocation.
 * The policy is only asked (policy_decide), never changed.
 */
#ifndef ACRDNS_SCRUB_H
#define ACRDNS_SCRUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy.h"
#include "wire.h"

/** Most names a chain may reach; a longer chain is cut (what is beyond goes). */
#define SCRUB_CHAIN_MAX 16

/** The question's chain: the question name, then every name it reaches. */
struct scrub_chain {
	unsigned n;                                   /**< names held, the question first */
	uint16_t len[SCRUB_CHAIN_MAX];
	bool by_dname[SCRUB_CHAIN_MAX];               /**< reached by a DNAME rewrite */
	uint8_t name[SCRUB_CHAIN_MAX][WIRE_NAME_MAX + 1]; /**< lowercase wire names */
};

/**
 * Walk the answer section of msg from its question: CNAME targets of
 * chain names, and chain names rewritten by a DNAME whose owner is above
 * them (RFC 6672 section 2.2), until nothing new is reached.
 * @return 0, or -1 when the message cannot be read
 */
int scrub_chain_walk(const uint8_t *msg, size_t len, struct scrub_chain *c);

/**
 * @return the index of the first name the question reaches (the question
 * itself not counted) under the special-use
 * ".invalid" (RFC 6761 6.4), or -1.  No resolver answers for such a name:
 * a chain into one is a block decided upstream (Azure DNS Security Policy
 * answers `CNAME blockpolicy.azuredns.invalid`).
 */
int scrub_chain_invalid(const struct scrub_chain *c);

enum scrub_status {
	SCRUB_CLEAN,      /**< nothing to remove: use the message as it is */
	SCRUB_REWRITTEN,  /**< records removed: use the rebuilt message */
	SCRUB_MALFORMED,  /**< the message cannot be read: drop it */
	SCRUB_UNREADABLE, /**< a record that stays names something this decoder
			       refuses (a forward compression pointer, say), which
			       a client might still follow: it cannot be rebuilt,
			       so the answer must be refused whole */
};

/** How many records scrubbing removed, per section (answer, authority, additional). */
struct scrub_result {
	unsigned removed[3];
};

/**
 * Scrub an upstream answer.  OPT is not copied into a rebuilt message (the
 * cache strips it anyway).  Names in a rebuilt message are uncompressed
 * but for pointers to the question, so removing a record never leaves a
 * pointer dangling.
 * @param p the policy that decides which names are denied
 * @param out receives the rebuilt message on SCRUB_REWRITTEN
 * @param max size of out
 * @param out_len receives its length
 * @param r receives what was removed (may be NULL)
 */
enum scrub_status scrub_answer(const struct policy *p, const uint8_t *msg, size_t len,
			       uint8_t *out, size_t max, size_t *out_len, struct scrub_result *r);

/**
 * Read the name a client follows from a record's RDATA: CNAME and DNAME
 * targets, SVCB/HTTPS TargetName, SRV, MX and NAPTR targets (RFC 2782,
 * RFC 1035, RFC 3403); compression pointers are followed.
 * @param target 256 bytes; receives the lowercase wire name
 * @return its length, 0 when the record names none ("." in SVCB, SRV, MX
 *         and NAPTR; a type without a target), -1 when it cannot be decoded
 */
int scrub_rdata_target(const uint8_t *msg, size_t len, const struct wire_rr *rr, uint8_t *target);

#endif
