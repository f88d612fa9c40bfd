/**
 * \file upstream_set.c
 * The sets of upstream servers, one per zone (see upstream_set.h): built
 * from `upstreams` and `forward`, kept across reloads by zone, chosen by
 * the longest zone holding a name.
 */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "server.h"
#include "upstream_set.h"

/** A set's server list was rebuilt (a reload, a file: list that changed). */
static void set_rebuilt(void *arg)
{
	struct upstream_sets *ss = arg;

	/* A reload rebuilds every set: their owner hears of it once, at the end. */
	if (!ss->configuring && ss->rebuilt)
		ss->rebuilt(ss->rebuilt_arg);
}

/** @return a set for zone (no server yet), or NULL when out of memory. */
static struct upstream_set *set_new(struct upstream_sets *ss, const uint8_t *zone, size_t zone_len,
				    const char *name)
{
	struct upstream_set *set = calloc(1, sizeof(*set));

	if (!set || !(set->name = strdup(name))) {
		free(set);
		return NULL;
	}
	memcpy(set->zone, zone, zone_len);
	set->zone_len = zone_len;
	upstream_servers_init(&set->sv, ss->srv);
	set->sv.zone = zone_len > 1 ? set->name : NULL;
	set->sv.rebuilt = set_rebuilt;
	set->sv.rebuilt_arg = ss;
	return set;
}

static void set_free(struct upstream_set *set)
{
	free(set->name);
	free(set);
}

/** No longer configured: stop its watches and pools now, free it when its questions end. */
static void set_retire(struct upstream_sets *ss, struct upstream_set *set)
{
	log_notice("forward zone %s removed; its names go to the other upstreams", set->name);
	upstream_servers_cleanup(&set->sv);
	if (set->inflight == 0) {
		set_free(set);
		return;
	}
	set->next_retired = ss->retired;
	ss->retired = set;
}

int upstream_sets_init(struct upstream_sets *ss, struct server *srv)
{
	memset(ss, 0, sizeof(*ss));
	ss->srv = srv;
	if (!(ss->list = calloc(1, sizeof(*ss->list))) ||
	    !(ss->list[0] = set_new(ss, (const uint8_t *)"", 1, "."))) {
		free(ss->list);
		ss->list = NULL;
		return -1;
	}
	ss->n = 1;
	return 0;
}

void upstream_sets_closing(struct upstream_sets *ss)
{
	for (size_t i = 0; i < ss->n; i++)
		upstream_pools_closing(&ss->list[i]->sv.pools);
}

void upstream_sets_cleanup(struct upstream_sets *ss)
{
	for (size_t i = 0; i < ss->n; i++) {
		upstream_servers_cleanup(&ss->list[i]->sv);
		set_free(ss->list[i]);
	}
	while (ss->retired) {
		struct upstream_set *next = ss->retired->next_retired;
		set_free(ss->retired);
		ss->retired = next;
	}
	free(ss->list);
	ss->list = NULL;
	ss->n = 0;
}

/** The set of ss for exactly this zone, or NULL. */
static struct upstream_set *set_of_zone(const struct upstream_sets *ss, const uint8_t *zone,
					size_t zone_len)
{
	for (size_t i = 0; i < ss->n; i++)
		if (ss->list[i]->zone_len == zone_len && memcmp(ss->list[i]->zone, zone, zone_len) == 0)
			return ss->list[i];
	return NULL;
}

int upstream_sets_configure(struct upstream_sets *ss, const struct config *cfg, char *err,
			    size_t errlen)
{
	size_t n = 1 + cfg->n_forward;
	struct upstream_set **list = calloc(n, sizeof(*list));
	int rc = 0;

	if (!list) {
		snprintf(err, errlen, "forward: out of memory");
		return -1;
	}
	/* Zones that stay keep their sets; new zones get new ones. */
	list[0] = ss->list[0];
	for (size_t i = 0; i < cfg->n_forward; i++) {
		const struct cfg_forward *f = &cfg->forward[i];
		list[1 + i] = set_of_zone(ss, f->zone, (size_t)f->zone_len);
		if (!list[1 + i] && !(list[1 + i] = set_new(ss, f->zone, (size_t)f->zone_len, f->name))) {
			for (size_t j = 1; j <= i; j++)
				if (!set_of_zone(ss, list[j]->zone, list[j]->zone_len))
					set_free(list[j]);
			free(list);
			snprintf(err, errlen, "forward: out of memory");
			return -1;
		}
	}
	for (size_t i = 1; i < ss->n; i++) {
		bool kept = false;
		for (size_t j = 1; j < n && !kept; j++)
			kept = list[j] == ss->list[i];
		if (!kept)
			set_retire(ss, ss->list[i]);
	}
	free(ss->list);
	ss->list = list;
	ss->n = n;

	ss->configuring = true;
	for (size_t i = 0; i < n && rc == 0; i++) {
		const struct cfg_upstream *specs = i ? cfg->forward[i - 1].upstreams : cfg->upstreams;
		size_t n_specs = i ? cfg->forward[i - 1].n_upstreams : cfg->n_upstreams;
		rc = upstream_servers_configure(&list[i]->sv, specs, n_specs, cfg, err, errlen);
	}
	ss->configuring = false;
	set_rebuilt(ss);
	return rc;
}

struct upstream_set *upstream_sets_find(const struct upstream_sets *ss, const uint8_t *name,
					size_t len)
{
	struct upstream_set *best = ss->list[0];

	/* Zones that hold a name end it at a label: the longest is the most specific. */
	for (size_t i = 1; i < ss->n; i++) {
		struct upstream_set *set = ss->list[i];
		if (set->zone_len > best->zone_len && wire_name_under(name, len, set->zone, set->zone_len))
			best = set;
	}
	return best;
}

void upstream_set_hold(struct upstream_set *set)
{
	set->inflight++;
}

void upstream_set_release(struct upstream_sets *ss, struct upstream_set *set)
{
	if (--set->inflight > 0)
		return;
	for (struct upstream_set **p = &ss->retired; *p; p = &(*p)->next_retired) {
		if (*p == set) {
			*p = set->next_retired;
			set_free(set);
			return;
		}
	}
}

void upstream_sets_drop(struct upstream_sets *ss, const struct cfg_addr *addr)
{
	for (size_t i = 0; i < ss->n; i++)
		upstream_servers_drop(&ss->list[i]->sv, addr);
}
