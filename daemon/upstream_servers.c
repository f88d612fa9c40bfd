/**
 * \file upstream_servers.c
 * The server list, rebuilt from the configuration and the resolv.conf
 * files it names, and each server's RTT and counters.
 */
#include "autoconf.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "address.h"
#include "log.h"
#include "server.h"
#include "upstream_servers.h"

const double upstream_rtt_bounds[UPSTREAM_RTT_BUCKETS] = {
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
};

bool upstream_is_self(const struct cfg_addr *listen, size_t n_listen, const struct cfg_addr *addr)
{
	for (size_t i = 0; i < n_listen; i++) {
		const struct cfg_addr *l = &listen[i];
		if (address_equal(l, addr))
			return true;
		if (l->ss.ss_family != addr->ss.ss_family)
			continue;
		if (l->ss.ss_family == AF_INET) {
			const struct sockaddr_in *x = (const void *)&l->ss, *y = (const void *)&addr->ss;
			if (x->sin_port == y->sin_port && x->sin_addr.s_addr == htonl(INADDR_ANY) &&
			    (ntohl(y->sin_addr.s_addr) >> 24) == 127)
				return true;
		} else {
			const struct sockaddr_in6 *x = (const void *)&l->ss, *y = (const void *)&addr->ss;
			if (x->sin6_port == y->sin6_port && IN6_IS_ADDR_UNSPECIFIED(&x->sin6_addr) &&
			    IN6_IS_ADDR_LOOPBACK(&y->sin6_addr))
				return true;
		}
	}
	return false;
}

/** Would sending to addr reach one of our own listeners? */
static bool is_self(const struct upstream_servers *u, const struct cfg_addr *addr)
{
	return upstream_is_self(u->self, u->n_self, addr);
}

int upstream_read_resolv(const char *path, struct cfg_addr **out)
{
	FILE *f = fopen(path, "re");
	char line[512];
	int n = 0;

	*out = NULL;
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		char *save = NULL, *kw = strtok_r(line, " \t\r\n", &save);
		char *addr = kw ? strtok_r(NULL, " \t\r\n", &save) : NULL;
		struct addrinfo hints = { .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV,
					  .ai_socktype = SOCK_DGRAM }, *ai;
		if (!kw || strcmp(kw, "nameserver") != 0 || !addr)
			continue;
		if (getaddrinfo(addr, "53", &hints, &ai) != 0)
			continue;
		struct cfg_addr *a = realloc(*out, (size_t)(n + 1) * sizeof(*a));
		if (a) {
			*out = a;
			memset(&a[n], 0, sizeof(a[n]));
			memcpy(&a[n].ss, ai->ai_addr, ai->ai_addrlen);
			a[n].len = ai->ai_addrlen;
			n++;
		}
		freeaddrinfo(ai);
	}
	fclose(f);
	return n;
}

/** Rebuild the server list from the specs, keeping RTT state of servers that stay. */
static void rebuild(struct upstream_servers *u)
{
	struct upstream_server *list = NULL;
	size_t n = 0;
	char name[64];

	for (size_t i = 0; i < u->n_specs; i++) {
		struct cfg_addr *addrs = NULL;
		int na;
		if (u->specs[i].file) {
			na = upstream_read_resolv(u->specs[i].file, &addrs);
			if (na < 0)
				log_warn("upstreams: cannot read %s: %s", u->specs[i].file, strerror(errno));
		} else {
			addrs = malloc(sizeof(*addrs));
			na = addrs ? 1 : 0;
			if (addrs)
				addrs[0] = u->specs[i].addr;
		}
		for (int j = 0; j < na; j++) {
			bool dup = false;
			address_str((const struct sockaddr *)&addrs[j].ss, name, sizeof(name));
			if (is_self(u, &addrs[j])) {
				log_warn("upstream %s%s%s is this daemon's own listener; skipped", name,
					 u->zone ? " for zone " : "", u->zone ? u->zone : "");
				continue;
			}
			for (size_t k = 0; k < n; k++)
				dup |= address_equal(&list[k].addr, &addrs[j]);
			if (dup)
				continue;
			struct upstream_server *l2 = realloc(list, (n + 1) * sizeof(*l2));
			if (!l2)
				break;
			list = l2;
			memset(&list[n], 0, sizeof(list[n]));
			list[n].addr = addrs[j];
			for (size_t k = 0; k < u->n; k++)
				if (address_equal(&u->list[k].addr, &addrs[j]))
					list[n] = u->list[k];
			/* Without a pool (no memory), its sockets are its attempts' own. */
			if (!list[n].pool)
				list[n].pool = upstream_pool_new(&u->pools);
			n++;
		}
		free(addrs);
	}
	for (size_t k = 0; k < u->n; k++) {
		bool kept = false;
		for (size_t i = 0; i < n && !kept; i++)
			kept = address_equal(&list[i].addr, &u->list[k].addr);
		if (!kept)
			upstream_pool_free(u->list[k].pool);
	}
	free(u->list);
	u->list = list;
	u->n = n;
	if (n == 0 && u->zone)
		log_err("no usable upstream server for zone %s: its names get SERVFAIL or stale answers",
			u->zone);
	else if (n == 0)
		log_err("no usable upstream server: every forwarded query gets SERVFAIL");
	for (size_t i = 0; i < n; i++) {
		address_str((const struct sockaddr *)&list[i].addr.ss, name, sizeof(name));
		log_debug("upstream %s%s%s", name, u->zone ? " for zone " : "", u->zone ? u->zone : "");
	}
	if (u->rebuilt)
		u->rebuilt(u->rebuilt_arg);
}

void upstream_servers_drop(struct upstream_servers *u, const struct cfg_addr *addr)
{
	for (size_t i = 0; i < u->n; i++) {
		if (!address_equal(&u->list[i].addr, addr))
			continue;
		upstream_pool_free(u->list[i].pool);
		memmove(&u->list[i], &u->list[i + 1], (u->n - i - 1) * sizeof(u->list[i]));
		if (--u->n == 0 && u->zone)
			log_err("no usable upstream server for zone %s: its names get SERVFAIL or stale "
				"answers", u->zone);
		else if (u->n == 0)
			log_err("no usable upstream server: every forwarded query gets SERVFAIL");
		return;
	}
}

static void watch_cb(struct ev_loop *loop, ev_stat *w, int revents)
{
	struct upstream_servers *u = w->data;
	(void)loop;
	(void)revents;

	log_notice("%s changed; re-reading upstream servers", w->path);
	rebuild(u);
}

static void stop_watches(struct upstream_servers *u)
{
	for (size_t i = 0; i < u->n_watch; i++)
		ev_stat_stop(u->srv->loop, &u->watch[i]);
	free(u->watch);
	u->watch = NULL;
	u->n_watch = 0;
	for (size_t i = 0; i < u->n_specs; i++)
		free(u->specs[i].file);
	free(u->specs);
	u->specs = NULL;
	u->n_specs = 0;
}

int upstream_servers_configure(struct upstream_servers *u, const struct cfg_upstream *from,
			       size_t n_from, const struct config *cfg, char *err, size_t errlen)
{
	struct cfg_upstream *specs = calloc(n_from ? n_from : 1, sizeof(*specs));
	struct cfg_addr *self = calloc(cfg->n_listen ? cfg->n_listen : 1, sizeof(*self));
	ev_stat *watch = calloc(n_from ? n_from : 1, sizeof(*watch));

	if (!specs || !self || !watch) {
		free(specs);
		free(self);
		free(watch);
		snprintf(err, errlen, "upstreams: out of memory");
		return -1;
	}
	stop_watches(u);
	u->specs = specs;
	u->n_specs = n_from;
	u->watch = watch;
	for (size_t i = 0; i < n_from; i++) {
		specs[i] = from[i];
		if (specs[i].file) {
			specs[i].file = strdup(specs[i].file);
			if (!specs[i].file)
				continue;
			ev_stat_init(&watch[u->n_watch], watch_cb, specs[i].file, 2.0);
			watch[u->n_watch].data = u;
			ev_stat_start(u->srv->loop, &watch[u->n_watch]);
			u->n_watch++;
		}
	}
	free(u->self);
	memcpy(self, cfg->listen, cfg->n_listen * sizeof(*self));
	u->self = self;
	u->n_self = cfg->n_listen;
	rebuild(u);
	return 0;
}

void upstream_servers_init(struct upstream_servers *sv, struct server *srv)
{
	memset(sv, 0, sizeof(*sv));
	sv->srv = srv;
	upstream_pools_init(&sv->pools, srv->loop);
}

void upstream_servers_cleanup(struct upstream_servers *sv)
{
	upstream_pools_closing(&sv->pools);
	for (size_t i = 0; i < sv->n; i++)
		upstream_pool_free(sv->list[i].pool);
	stop_watches(sv);
	free(sv->list);
	free(sv->self);
	sv->list = NULL;
	sv->self = NULL;
	sv->n = sv->n_self = 0;
}

struct upstream_server *upstream_server_of(struct upstream_servers *sv, const struct cfg_addr *a)
{
	for (size_t i = 0; i < sv->n; i++)
		if (address_equal(&sv->list[i].addr, a))
			return &sv->list[i];
	return NULL; /* removed by a reload since the attempt was sent */
}

void upstream_server_error(struct upstream_servers *sv, const struct cfg_addr *addr)
{
	struct upstream_server *s = upstream_server_of(sv, addr);

	STAT_INC(sv->srv->stats.upstream_errors);
	if (s)
		s->n.errors++;
}

double upstream_server_rto(const struct upstream_server *s)
{
	if (!s || !s->measured)
		return UPSTREAM_RTO_UNKNOWN;
	double rto = s->srtt + 4 * s->rttvar;
	return rto < UPSTREAM_RTO_MIN ? UPSTREAM_RTO_MIN : rto > UPSTREAM_RTO_MAX ? UPSTREAM_RTO_MAX : rto;
}

/** RFC 6298 smoothing. */
void upstream_server_sample(struct upstream_server *s, double rtt, ev_tstamp now)
{
	if (!s)
		return;
	int b = 0;
	while (b < UPSTREAM_RTT_BUCKETS && rtt > upstream_rtt_bounds[b])
		b++;
	s->n.rtt_buckets[b]++;
	s->n.rtt_sum += rtt;
	s->n.replies++;
	if (!s->measured) {
		s->srtt = rtt;
		s->rttvar = rtt / 2;
		s->measured = true;
	} else {
		double d = s->srtt > rtt ? s->srtt - rtt : rtt - s->srtt;
		s->rttvar = 0.75 * s->rttvar + 0.25 * d;
		s->srtt = 0.875 * s->srtt + 0.125 * rtt;
	}
	s->changed = now;
}

void upstream_server_penalise(struct upstream_server *s, ev_tstamp now)
{
	if (!s)
		return;
	s->srtt = s->measured ? s->srtt * 2 + 0.1 : UPSTREAM_RTO_UNKNOWN * 2;
	if (s->srtt > 5.0)
		s->srtt = 5.0;
	s->measured = true;
	s->changed = now;
}

bool upstream_server_edns(const struct upstream_server *s, ev_tstamp now)
{
	return !s || now >= s->noedns_until;
}

void upstream_server_noedns(struct upstream_server *s, ev_tstamp now)
{
	char name[64];

	if (!s)
		return;
	if (now >= s->noedns_until) {
		address_str((const struct sockaddr *)&s->addr.ss, name, sizeof(name));
		log_notice("upstream %s rejects EDNS (FORMERR or NOTIMP without OPT): asking it "
			   "without EDNS for %.0f minutes", name, UPSTREAM_NOEDNS_HOLD / 60);
	}
	s->noedns_until = now + UPSTREAM_NOEDNS_HOLD;
}
