/**
 * \file loopdetect.h
 * Finding upstream servers that lead back to this daemon (dnsmasq's
 * --dns-loop-detect is the model).  Comparing addresses with our own
 * listeners catches only the one-hop loop; a stub such as systemd-resolved
 * that forwards to acrdnsd while acrdnsd forwards to it is found only by
 * sending something and seeing it come back.
 *
 * Each check sends every upstream server a query for a fresh random name
 * under LOOPDETECT_SUFFIX, from a socket of this module's own.  A server
 * that answers it is not a loop; when the name instead arrives at one of
 * our listeners, the server it was sent to is a loop: it is dropped from
 * the upstream list until the list is next rebuilt (a reload, or a change
 * of a file: list), logged at err with the path the probe took, counted
 * (upstream_loops) and listed by `acrdnsctl status`.
 *
 * The query path only recognises the suffix (loopdetect_is_probe) and
 * reports arrivals (loopdetect_arrived); names under it are answered
 * NXDOMAIN locally and never forwarded.  The probe is addressed to one
 * server, not to a set: the owner hands loopdetect_check() every server
 * of every set, and is told of each loop found through the callback given
 * to loopdetect_new(), so this module never names upstream.
 */
#ifndef ACRDNS_LOOPDETECT_H
#define ACRDNS_LOOPDETECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config.h"

struct server;
struct loopdetect;

/**
 * The probe names' parent, in text.  Under .test (RFC 6761 §6.2: never in
 * the public DNS), which stub resolvers forward like any other name, as
 * dnsmasq's probes are; .invalid would be answered by systemd-resolved
 * itself and so hide the very loop it is for.
 */
#define LOOPDETECT_SUFFIX "acrdns-loop.test"

/** Seconds a check waits for its probes before calling the silent servers no loop. */
#define LOOPDETECT_WAIT 2.0

/** Told that server leads back to us: stop using it until its list is rebuilt. */
typedef void (*loopdetect_found_fn)(void *arg, const struct cfg_addr *server);

/**
 * @param found told of each loop found
 * @return the loop detector (no socket open yet), or NULL when out of memory
 */
struct loopdetect *loopdetect_new(struct server *s, loopdetect_found_fn found, void *arg);

/** Close its sockets and free; NULL is allowed. */
void loopdetect_free(struct loopdetect *ld);

/**
 * Start a check of servers: forget the last check's loops and probes, and
 * send each server (once, however many sets hold it) a fresh probe.
 * Called whenever an upstream list was rebuilt.
 */
void loopdetect_check(struct loopdetect *ld, const struct cfg_addr *servers, size_t n);

/**
 * @param qname a wire name (as wire_query_parse gives it)
 * @return true when qname is LOOPDETECT_SUFFIX or below it: answer it
 *         locally, never forward it
 */
bool loopdetect_is_probe(const uint8_t *qname, size_t len);

/**
 * A probe name reached one of our listeners from peer.  When it is one
 * this check sent, its server is a loop: logged, counted and handed to
 * the found callback.
 * @return true when it was a current probe
 */
bool loopdetect_arrived(struct loopdetect *ld, const uint8_t *qname, size_t len,
			const struct sockaddr_storage *peer);

/** @return true until the first check since start has heard from (or waited for) every server. */
bool loopdetect_pending(const struct loopdetect *ld);

/** Call cb for each server the current check found to be a loop. */
void loopdetect_each_loop(const struct loopdetect *ld,
			  void (*cb)(void *arg, const struct cfg_addr *server), void *arg);

#endif
