/**
 * \file listener.h
 * The sockets clients talk to: UDP and TCP on each `listen` address.
 * Each listener is handed its handler when it is opened (as unbound's
 * listen_create(..., worker_handle_request, worker)); packets and TCP
 * messages go to it with a reply_to that says how to answer.  The
 * listener knows nothing of the layers above it.
 */
#ifndef ACRDNS_LISTENER_H
#define ACRDNS_LISTENER_H

#include <ev.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "wire.h"

struct reply_to;
struct server;
struct tcp_conn;

/**
 * What a listener does with each message a client sends.  The message is
 * valid only during the call; rt may be copied to answer later.
 */
typedef void (*listener_handler)(void *arg, const uint8_t *msg, size_t len, struct reply_to *rt);

/**
 * How to answer one query: the socket, the peer and, for wildcard binds,
 * our address.  Neither udp nor tcp set: nobody to answer (a prefetch).
 */
struct reply_to {
	struct listener *udp;     /**< set for UDP */
	struct tcp_conn *tcp;     /**< set for TCP */
	struct sockaddr_storage peer;
	socklen_t peer_len;
	bool has_local;
	union {
		struct in_pktinfo v4;
		struct in6_pktinfo v6;
	} local;
};

struct listener {
	struct listener *next;
	struct server *srv;
	struct cfg_addr addr;
	bool wildcard;            /**< bound to 0.0.0.0 or ::: answer from the address asked */
	bool inherited;           /**< passed by socket activation, not in `listen`: kept on reload */
	bool worker;              /**< a worker thread's UDP twin (srv is its shadow server) */
	bool udp_passed;          /**< the UDP socket came from socket activation */
	int udp_fd, tcp_fd;       /**< -1: none (a passed socket of one type only) */
	unsigned held;            /**< UDP queries waiting for upstream that will answer here */
	bool closed;              /**< closed by a reload; freed when nothing is held */
	listener_handler handler;
	void *handler_arg;
	ev_io udp_io, tcp_io;
};

/**
 * Open UDP and TCP sockets on addr (not yet watched).
 * @param handler called with each query message, and arg
 * @return the listener, or NULL with the reason logged and in errno
 */
struct listener *listener_open(struct server *srv, const struct cfg_addr *addr,
			       listener_handler handler, void *arg);

/**
 * Take the sockets passed by socket activation.  listener_open() uses one
 * in place of binding when its address and type match.
 * @return how many were passed
 */
size_t listener_inherit(void);

/** @return listeners for the passed sockets no listener_open() took (not yet watched). */
struct listener *listener_adopt_inherited(struct server *srv, listener_handler handler, void *arg);

/** Bind UDP sockets with SO_REUSEPORT from now on, so that workers can share them. */
void listener_set_reuseport(bool on);

/**
 * Open a worker's UDP socket on addr, beside the main loop's (SO_REUSEPORT).
 * @return the listener (not yet watched), or NULL with the reason logged
 */
struct listener *listener_open_worker(struct server *shadow, const struct cfg_addr *addr,
				      listener_handler handler, void *arg);

/** Start watching a listener's sockets on the server's loop. */
void listener_start(struct listener *l);

/**
 * Stop, close and free a listener; its open TCP connections stay until
 * done, and the struct itself until no UDP query waiting upstream refers
 * to it (their answers are dropped: the address is gone).
 */
void listener_close(struct listener *l);

/** Send a reply; for TCP it is queued when the socket is full. */
void listener_reply(const struct reply_to *rt, const uint8_t *msg, size_t len);

/** @return the largest reply this client can take (65535 for TCP). */
size_t listener_max_reply(const struct reply_to *rt, const struct wire_query *q);

/** A query on this reply_to waits for upstream: keep its TCP connection. */
void listener_hold(struct reply_to *rt);

/**
 * The waiting query was answered or abandoned.  A TCP connection paused
 * at its limit of pending queries resumes reading from the event loop,
 * never from inside this call: the caller may be walking a list of
 * clients that a new query would join.
 */
void listener_release(struct reply_to *rt);

/**
 * Gather the UDP answers given outside a receive batch (those completed by
 * upstream replies) and send them with one sendmmsg() per listener before
 * the loop waits again.  The main loop only; stop before it is destroyed.
 */
void listener_batch_start(struct ev_loop *loop);
void listener_batch_stop(struct ev_loop *loop);
/** Send the UDP answers gathered so far now, not when the loop next waits. */
void listener_flush(void);

/** Close every TCP connection (shutdown). */
void listener_close_all_tcp(struct server *srv);

#endif
