/**
 * \file nft.h
 * Egress enforcement: the addresses in answers for explicitly allowed
 * names go into nftables sets, each with a timeout of its TTL plus a grace
 * period, so that a firewall can allow exactly those addresses.  Additions
 * are queued from the query path and committed in batches, one nftables
 * transaction each.  An answer that carries an address new to its set is
 * held until that transaction has completed, so the client's first SYN
 * finds the address in the set.
 */
#ifndef ACRDNS_NFT_H
#define ACRDNS_NFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"

struct nft;
struct server;

/** Addresses per transaction: a full queue is committed at once. */
#define NFT_BATCH 512
/** Commit a refresh (an address already in the set) this long after it was queued. */
#define NFT_FLUSH_DELAY 0.02
/** Answers that may wait for a commit; one more commits at once. */
#define NFT_HOLD_MAX 1024
/** An address is added again only when that moves its expiry by more than this. */
#define NFT_REFRESH_MARGIN 60

struct nft_counters {
	uint64_t added;       /**< addresses committed */
	uint64_t batches;     /**< transactions committed */
	uint64_t errors;      /**< transactions that failed */
	uint64_t held;        /**< answers that waited for their addresses' commit */
	uint64_t unconfirmed; /**< answers sent though their commit failed or they could not wait */
};

/** One queued address. */
struct nft_item {
	uint8_t family;     /**< 4 or 6 */
	uint8_t addr[16];
	uint32_t timeout;   /**< seconds */
};

/**
 * Start, change or stop the updates to match cfg->nft.
 * @return 0, or -1 with the reason in err (built without libnftables)
 */
int nft_configure(struct server *s, const struct config *cfg, char *err, size_t errlen);

/** Stop and free (pending additions are committed first). */
void nft_free(struct server *s);

/** @return true with the counters filled when updates are configured. */
bool nft_counters(const struct nft *n, struct nft_counters *out);

/**
 * Learn the A and AAAA records of an answer as sent to a client: those
 * owned by the question's name or by a name its CNAME chain in the answer
 * leads to.  Each gets the record's TTL plus the grace period.
 * @return true when an address is not in its set yet: the answer must
 * wait for the commit (nft_hold), or a client that connects at once has
 * its first packet dropped
 */
bool nft_learn(struct nft *n, const uint8_t *msg, size_t len);

/**
 * An answer that waits for a commit, kept by nft's caller: nft links it
 * and, once the addresses are committed, tells the caller through go()
 * that it may be sent.  nft never sends an answer itself.
 */
struct nft_waiter {
	struct nft_waiter *next;   /**< nft's */
	/**
	 * The answer may go now; last: the final one of this commit (send
	 * what was gathered).  Called when the commit has run: before the
	 * loop waits, or at once when a full queue or hold list commits.
	 */
	void (*go)(struct nft_waiter *w, bool last);
	bool confirmed;            /**< set before go(): the commit worked */
};

/**
 * Keep an answer that nft_learn() said must wait until the addresses are
 * committed: before the loop next waits for events, together with every
 * other answer held meanwhile.  If the commit fails the answer goes all
 * the same (DNS is never broken by the firewall), counted as unconfirmed.
 * @param w the answer, or NULL for one that could not be copied (counted
 *        as unconfirmed)
 * @return false when it cannot wait (NULL, or too many held: what is
 *         queued is committed now): the caller sends it now
 */
bool nft_hold(struct nft *n, struct nft_waiter *w);

typedef void (*nft_addr_cb)(void *arg, int family, const uint8_t *addr, uint32_t ttl);

/**
 * Call cb for each A (family 4) and AAAA (6) record of a NOERROR answer
 * whose owner is the question's name or a name that the answer's CNAME
 * records lead to from it (up to 16 names); other records are ignored.
 */
void nft_answer_addresses(const uint8_t *msg, size_t len, nft_addr_cb cb, void *arg);

/** @return the timeout in seconds for a record with this TTL. */
uint32_t nft_timeout(uint32_t ttl, uint32_t grace);

/**
 * Write the nftables commands that commit items as one transaction into
 * buf: add each (so that it exists), delete it and add it again with its
 * new timeout, since adding an element that exists keeps its old timeout.
 * @return the length, or 0 when it does not fit
 */
size_t nft_batch_text(const struct cfg_nft *cfg, const struct nft_item *items, size_t n,
		      char *buf, size_t buflen);

/** Write a complete example ruleset for cfg (what --print-nft shows). */
void nft_print_ruleset(FILE *f, const struct cfg_nft *cfg);

#endif
