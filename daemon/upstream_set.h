/**
 * \file upstream_set.h
 * Which servers a question goes to: one set of upstream servers for
 * `upstreams` (the zone ".") and one for each `forward` zone, the most
 * specific zone holding the question's name winning (conditional
 * forwarding, as unbound's forward-zone or dnsmasq's server=/zone/addr).
 *
 * Each set owns its servers, their RTT state, counters and socket pools
 * (upstream_servers), so that one zone's dead servers neither slow down
 * nor penalise another's.  A question chooses its set when it starts and
 * holds it until it ends: a reload that removes a zone retires its set,
 * which is freed once the last question that chose it has ended.
 */
#ifndef ACRDNS_UPSTREAM_SET_H
#define ACRDNS_UPSTREAM_SET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "upstream_servers.h"
#include "wire.h"

struct server;

/** The servers for one zone. */
struct upstream_set {
	uint8_t zone[WIRE_NAME_MAX + 1]; /**< lowercase wire name; the root for `upstreams` */
	size_t zone_len;
	char *name;                   /**< "." or "privatelink.azurecr.io": logs, metrics, explain */
	struct upstream_servers sv;
	size_t inflight;              /**< questions that chose this set and have not ended */
	struct upstream_set *next_retired;
};

/** Every set: list[0] is `upstreams`, always there; then the forward zones. */
struct upstream_sets {
	struct server *srv;
	struct upstream_set **list;
	size_t n;
	struct upstream_set *retired; /**< removed by a reload, waiting for their questions */
	void (*rebuilt)(void *arg);   /**< told once after any set's server list was rebuilt */
	void *rebuilt_arg;
	bool configuring;             /**< within upstream_sets_configure: one call at its end */
};

/** @return 0, or -1 when out of memory (the default set cannot be made). */
int upstream_sets_init(struct upstream_sets *ss, struct server *srv);

/** Shutting down: every set's pools close the sockets given back. */
void upstream_sets_closing(struct upstream_sets *ss);

/** Free every set, retired ones too (no question may be in flight). */
void upstream_sets_cleanup(struct upstream_sets *ss);

/**
 * Take the sets from a configuration: `upstreams`, and one set per
 * `forward` zone.  A zone that stays keeps its set (and so its servers'
 * RTT state); a zone no longer configured is retired.
 * @return 0, or -1 with err set (nothing changed)
 */
int upstream_sets_configure(struct upstream_sets *ss, const struct config *cfg, char *err,
			    size_t errlen);

/**
 * @param name an uncompressed wire name of len bytes
 * @return the set of the most specific zone holding name (the default
 *         set when no forward zone does)
 */
struct upstream_set *upstream_sets_find(const struct upstream_sets *ss, const uint8_t *name,
					size_t len);

/** A question chose set: it stays allocated until upstream_set_release(). */
void upstream_set_hold(struct upstream_set *set);

/** The question that chose set ended; a retired set with no question left is freed. */
void upstream_set_release(struct upstream_sets *ss, struct upstream_set *set);

/** Stop using addr in every set until that set's list is next rebuilt. */
void upstream_sets_drop(struct upstream_sets *ss, const struct cfg_addr *addr);

#endif
