/**
 * \file upstream_pool.h
 * Connected UDP sockets on random ports, kept per upstream server and lent
 * to one attempt at a time.  A socket serves one question after another
 * and is retired after UPSTREAM_POOL_USES questions or UPSTREAM_POOL_AGE
 * seconds, and closed after UPSTREAM_POOL_IDLE seconds unused: opening and
 * closing a socket per question (socket, bind, connect, epoll
 * registration, close) was a third of the forwarding path's CPU.
 */
#ifndef ACRDNS_UPSTREAM_POOL_H
#define ACRDNS_UPSTREAM_POOL_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define UPSTREAM_POOL_USES 64       /**< questions a socket carries before it is closed */
#define UPSTREAM_POOL_AGE 10.0      /**< seconds a socket lives at most */
#define UPSTREAM_POOL_IDLE 2.0      /**< seconds an idle socket waits for its next question */
#define UPSTREAM_POOL_IDLE_MAX 512  /**< idle sockets kept per server */

struct upstream_pool;

/** Every server's pool: the loop, the count of sockets, the sweep of idle ones. */
struct upstream_pools {
	struct ev_loop *loop;
	struct upstream_pool *list;   /**< every pool, for the sweep */
	size_t n_sockets;             /**< open, busy or idle */
	ev_timer sweep;               /**< closes idle sockets; runs while there are some */
	bool closing;                 /**< shutting down: sockets are closed, not pooled */
};

/** A connected UDP socket on a random port, lent to one attempt at a time. */
struct upstream_sock {
	int fd;
	ev_io io;                     /**< started for the socket's whole life */
	struct upstream_pools *all;
	struct upstream_pool *pool;   /**< NULL: not pooled (closed when given back) */
	void *owner;                  /**< the attempt borrowing it; NULL while idle */
	void (*readable)(void *owner);/**< called when the owner's socket can be read */
	struct cfg_addr addr;
	unsigned uses;
	uint16_t last_id;             /**< the previous question's ID: its late reply is no spoof */
	ev_tstamp born, idle_since;
	struct upstream_sock *prev, *next; /**< the pool's idle list, most recently used first */
};

void upstream_pools_init(struct upstream_pools *all, struct ev_loop *loop);

/** Shutting down: every socket given back from now on is closed; the sweep stops. */
void upstream_pools_closing(struct upstream_pools *all);

/** @return a pool for one server, or NULL when out of memory. */
struct upstream_pool *upstream_pool_new(struct upstream_pools *all);

/**
 * The server is gone: close its idle sockets, and free the pool once the
 * sockets lent out come back.
 */
void upstream_pool_free(struct upstream_pool *p);

/** @return sockets waiting idle in p. */
size_t upstream_pool_idle(const struct upstream_pool *p);

/**
 * A socket to addr for owner: the pool's most recently used, else a new
 * one (pool may be NULL: a socket of its own).
 * @return NULL with *hard set when no socket can be had at all, or with it
 *         clear when the connect failed (the server is unreachable)
 */
struct upstream_sock *upstream_pool_get(struct upstream_pools *all, struct upstream_pool *pool,
					const struct cfg_addr *addr, void (*readable)(void *owner),
					void *owner, bool *hard);

/**
 * An attempt is done with its socket: back to the pool, or closed when
 * spent, broken (healthy false) or not pooled.
 * @param id the ID of the question it carried
 */
void upstream_pool_put(struct upstream_sock *us, uint16_t id, bool healthy);

#endif
