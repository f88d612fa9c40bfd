/**
 * \file upstream_attempt.h
 * One exchange with one server about one question: a UDP query on a
 * pooled socket, or a TCP connection for a truncated answer.  A reply
 * counts only from the server asked (a connected socket), with the ID and
 * the question sent.  The attempt goes with OPT unless its server rejected
 * EDNS lately (upstream_server_edns()).  The attempt tells its owner (the
 * question) how it ended; what to try next is the owner's choice.
 */
#ifndef ACRDNS_UPSTREAM_ATTEMPT_H
#define ACRDNS_UPSTREAM_ATTEMPT_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "upstream_pool.h"
#include "upstream_servers.h"
#include "upstream_table.h"

/** How an attempt ended. */
enum upstream_attempt_end {
	UPSTREAM_ATTEMPT_ANSWER,    /**< a usable reply, prepared in srv->answer; still open */
	UPSTREAM_ATTEMPT_TRUNCATED, /**< TC over UDP: ask the same server over TCP; closed */
	UPSTREAM_ATTEMPT_REFUSED,   /**< SERVFAIL, REFUSED or the like (rcode says which); closed */
	UPSTREAM_ATTEMPT_FAILED,    /**< unreachable, closed early, or garbage over TCP (error
				     *   says which); closed */
	UPSTREAM_ATTEMPT_NOEDNS,    /**< FORMERR or NOTIMP without OPT to our OPT: the server is
				     *   marked to be asked without EDNS; ask it again; closed */
};

struct upstream_attempt;

typedef void (*upstream_attempt_fn)(void *owner, struct upstream_attempt *a,
				    enum upstream_attempt_end end);

struct upstream_attempt {
	struct upstream_servers *sv;
	const struct upstream_question *q;
	upstream_attempt_fn ended;
	void *owner;
	int fd;                       /**< -1 once finished */
	struct upstream_sock *us;     /**< UDP: the pooled socket behind fd */
	ev_io io;                     /**< TCP */
	bool tcp;
	bool tcp_connected;
	bool broken;                  /**< the socket had an error: not back to the pool */
	bool edns;                    /**< the query carried OPT */
	uint8_t rcode;                /**< UPSTREAM_ATTEMPT_REFUSED: the RCODE the server answered */
	const char *error;            /**< UPSTREAM_ATTEMPT_FAILED: what went wrong, for the log */
	struct cfg_addr addr;
	uint16_t id;
	ev_tstamp sent;
	uint8_t *tquery;              /**< TCP: the query with its length prefix (UDP sends at once) */
	uint16_t qlen;
	uint16_t qsent;
	uint8_t *tbuf;                /**< TCP reply being read */
	size_t tlen;
};

/**
 * Start an attempt to ask addr the question q, over TCP when tcp is set.
 * A connect() that fails at once still counts (closed: fd is -1), so that
 * it is a try of that server.
 * @param ended told how the attempt ended, with owner
 * @return false when no socket could be had at all (a is not started)
 */
bool upstream_attempt_start(struct upstream_attempt *a, struct upstream_servers *sv,
			    const struct upstream_question *q, const struct cfg_addr *addr, bool tcp,
			    upstream_attempt_fn ended, void *owner);

/** Close the attempt (nothing happens when it is closed). */
void upstream_attempt_close(struct upstream_attempt *a);

#endif
