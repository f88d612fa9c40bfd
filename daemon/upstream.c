/**
 * \file upstream.c
 * In-flight questions and their attempts.  An attempt is one UDP or TCP
 * exchange with one server; a question keeps its earlier attempts open
 * after a retry, so a slow first server still counts if it answers first.
 *
 * A UDP attempt borrows a connected socket on a random port from its
 * server's pool.  A socket serves one question at a time and is retired
 * after USOCK_USES questions or USOCK_AGE seconds, so a port is used a
 * short while by one question after another instead of being opened and
 * closed for each: that open and close (socket, bind, connect, epoll
 * registration, close) was a third of the forwarding path's CPU.
 */
#include "autoconf.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hash.h"
#include "log.h"
#include "random.h"
#include "server.h"
#include "upstream.h"

#define MAX_ATTEMPTS 8
#define RTO_UNKNOWN 0.4   /* seconds, for a server with no RTT sample yet */
#define RTO_MIN 0.05
#define RTO_MAX 1.5
#define RTT_FORGET 30.0   /* a penalised server is given another chance after this */

#define USOCK_USES 64     /* questions a pooled socket carries before it is closed */
#define USOCK_AGE 10.0    /* seconds a pooled socket lives at most */
#define USOCK_IDLE 2.0    /* seconds an idle socket waits for its next question */
#define USOCK_IDLE_MAX 512 /* idle sockets kept per server */

/** A connected UDP socket on a random port, lent to one attempt at a time. */
struct usock {
	int fd;
	ev_io io;                /**< started for the socket's whole life */
	struct upstreams *u;
	struct attempt *owner;   /**< NULL while idle */
	struct cfg_addr addr;
	unsigned uses;
	uint16_t last_id;        /**< the previous question's ID: its late reply is no spoof */
	ev_tstamp born, idle_since;
	struct usock *prev, *next; /**< the server's idle list, most recently used first */
};

struct upstream_server {
	struct cfg_addr addr;
	double srtt, rttvar;   /**< seconds */
	bool measured;
	ev_tstamp changed;
	struct upstream_counters n;
	struct usock *idle, *idle_tail; /**< pooled sockets; they move with the server on rebuild */
	size_t n_idle;
};

const double upstream_rtt_bounds[UPSTREAM_RTT_BUCKETS] = {
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
};

struct attempt {
	struct inflight *f;
	int fd;                /**< -1 once finished */
	struct usock *us;      /**< UDP: the pooled socket behind fd */
	ev_io io;              /**< TCP */
	bool tcp;
	bool tcp_connected;
	bool broken;           /**< the socket had an error: not back to the pool */
	struct cfg_addr addr;
	uint16_t id;
	ev_tstamp sent;
	uint8_t *tquery;       /**< TCP: the query with its length prefix (UDP sends at once) */
	uint16_t qlen;
	uint16_t qsent;
	uint8_t *tbuf;         /**< TCP reply being read */
	size_t tlen;
};

struct inflight {
	struct inflight *hnext;
	uint64_t hash;
	struct upstreams *u;
	uint8_t name[WIRE_NAME_MAX + 1];
	uint16_t name_len, qtype, qclass;
	uint8_t flags;
	upstream_done_fn done;
	void *arg;
	void *waiters;         /**< the owner's, never read here */
	struct attempt att[MAX_ATTEMPTS];
	int n_att;
	bool late;             /**< UPSTREAM_PATIENCE has passed */
	ev_timer retry, patience, deadline;
};

struct upstreams {
	struct server *srv;
	struct upstream_server *servers;
	size_t n;
	struct cfg_upstream *specs;      /**< copies, for re-reading files */
	size_t n_specs;
	struct cfg_addr *self;           /**< what we listen on */
	size_t n_self;
	ev_stat *watch;
	size_t n_watch;
	struct inflight **table;
	size_t mask;
	size_t count;
	ev_timer sweep;                  /**< closes idle sockets; runs while there are some */
	bool closing;                    /**< upstream_free: sockets are closed, not pooled */
	size_t n_sockets;                /**< pooled UDP sockets open, busy or idle */
};

static void pool_close(struct upstream_server *sv);

/* ---- server list ---- */

/** Would sending to addr reach one of our own listeners? */
static bool is_self(const struct upstreams *u, const struct cfg_addr *addr)
{
	for (size_t i = 0; i < u->n_self; i++) {
		const struct cfg_addr *l = &u->self[i];
		if (config_addr_equal(l, addr))
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
static void rebuild(struct upstreams *u)
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
			config_addr_str((const struct sockaddr *)&addrs[j].ss, name, sizeof(name));
			if (is_self(u, &addrs[j])) {
				log_warn("upstream %s is this daemon's own listener; skipped", name);
				continue;
			}
			for (size_t k = 0; k < n; k++)
				dup |= config_addr_equal(&list[k].addr, &addrs[j]);
			if (dup)
				continue;
			struct upstream_server *l2 = realloc(list, (n + 1) * sizeof(*l2));
			if (!l2)
				break;
			list = l2;
			memset(&list[n], 0, sizeof(list[n]));
			list[n].addr = addrs[j];
			for (size_t k = 0; k < u->n; k++)
				if (config_addr_equal(&u->servers[k].addr, &addrs[j]))
					list[n] = u->servers[k];
			n++;
		}
		free(addrs);
	}
	for (size_t k = 0; k < u->n; k++) {
		bool kept = false;
		for (size_t i = 0; i < n && !kept; i++)
			kept = config_addr_equal(&list[i].addr, &u->servers[k].addr);
		if (!kept)
			pool_close(&u->servers[k]);
	}
	free(u->servers);
	u->servers = list;
	u->n = n;
	if (n == 0)
		log_warn("no usable upstream server: every forwarded query gets SERVFAIL");
	for (size_t i = 0; i < n; i++) {
		config_addr_str((const struct sockaddr *)&list[i].addr.ss, name, sizeof(name));
		log_debug("upstream %s", name);
	}
}

static void watch_cb(struct ev_loop *loop, ev_stat *w, int revents)
{
	struct upstreams *u = w->data;
	(void)loop;
	(void)revents;

	log_notice("%s changed; re-reading upstream servers", w->path);
	rebuild(u);
}

static void stop_watches(struct upstreams *u)
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

int upstream_configure(struct upstreams *u, const struct config *cfg, char *err, size_t errlen)
{
	struct cfg_upstream *specs = calloc(cfg->n_upstreams, sizeof(*specs));
	struct cfg_addr *self = calloc(cfg->n_listen ? cfg->n_listen : 1, sizeof(*self));
	ev_stat *watch = calloc(cfg->n_upstreams, sizeof(*watch));

	if (!specs || !self || !watch) {
		free(specs);
		free(self);
		free(watch);
		snprintf(err, errlen, "upstreams: out of memory");
		return -1;
	}
	stop_watches(u);
	u->specs = specs;
	u->n_specs = cfg->n_upstreams;
	u->watch = watch;
	for (size_t i = 0; i < cfg->n_upstreams; i++) {
		specs[i] = cfg->upstreams[i];
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

size_t upstream_count(const struct upstreams *u)
{
	return u->n;
}

void upstream_each(const struct upstreams *u, upstream_each_cb cb, void *arg)
{
	for (size_t i = 0; i < u->n; i++)
		cb(arg, &u->servers[i].addr, &u->servers[i].n);
}

size_t upstream_inflight(const struct upstreams *u)
{
	return u->count;
}

size_t upstream_sockets(const struct upstreams *u, size_t *idle)
{
	*idle = 0;
	for (size_t i = 0; i < u->n; i++)
		*idle += u->servers[i].n_idle;
	return u->n_sockets;
}

static void sweep_cb(struct ev_loop *loop, ev_timer *w, int revents);

struct upstreams *upstream_new(struct server *srv)
{
	struct upstreams *u = calloc(1, sizeof(*u));

	if (!u)
		return NULL;
	u->srv = srv;
	ev_init(&u->sweep, sweep_cb);
	u->sweep.repeat = 1.0;
	u->sweep.data = u;
	u->mask = 1023;
	u->table = calloc(u->mask + 1, sizeof(*u->table));
	if (!u->table) {
		free(u);
		return NULL;
	}
	return u;
}

static struct upstream_server *server_of(struct upstreams *u, const struct cfg_addr *a)
{
	for (size_t i = 0; i < u->n; i++)
		if (config_addr_equal(&u->servers[i].addr, a))
			return &u->servers[i];
	return NULL; /* removed by a reload since the attempt was sent */
}

/** Count a failed exchange with addr: unreachable, refused or unanswerable. */
static void server_error(struct upstreams *u, const struct cfg_addr *addr)
{
	struct upstream_server *sv = server_of(u, addr);

	STAT_INC(u->srv->stats.upstream_errors);
	if (sv)
		sv->n.errors++;
}

static double server_rto(const struct upstream_server *s)
{
	if (!s || !s->measured)
		return RTO_UNKNOWN;
	double rto = s->srtt + 4 * s->rttvar;
	return rto < RTO_MIN ? RTO_MIN : rto > RTO_MAX ? RTO_MAX : rto;
}

/** RFC 6298 smoothing. */
static void server_sample(struct upstream_server *s, double rtt, ev_tstamp now)
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

static void server_penalise(struct upstream_server *s, ev_tstamp now)
{
	if (!s)
		return;
	s->srtt = s->measured ? s->srtt * 2 + 0.1 : RTO_UNKNOWN * 2;
	if (s->srtt > 5.0)
		s->srtt = 5.0;
	s->measured = true;
	s->changed = now;
}

/* ---- in-flight table ---- */

static struct inflight **slot_of(struct upstreams *u, const struct cache_key *k, uint64_t h)
{
	struct inflight **pp = &u->table[h & u->mask];

	for (; *pp; pp = &(*pp)->hnext) {
		struct inflight *f = *pp;
		if (f->hash == h && f->qtype == k->qtype && f->qclass == k->qclass &&
		    f->flags == k->flags && f->name_len == k->name_len &&
		    memcmp(f->name, k->name, k->name_len) == 0)
			break;
	}
	return pp;
}

static void table_remove(struct upstreams *u, struct inflight *f)
{
	struct inflight **pp = &u->table[f->hash & u->mask];

	while (*pp && *pp != f)
		pp = &(*pp)->hnext;
	if (*pp) {
		*pp = f->hnext;
		u->count--;
	}
	f->hnext = NULL;
}

/* ---- the socket pool ---- */

static void usock_close(struct usock *us)
{
	us->u->n_sockets--;
	ev_io_stop(us->u->srv->loop, &us->io);
	close(us->fd);
	free(us);
}

static void idle_unlink(struct upstream_server *sv, struct usock *us)
{
	if (us->prev)
		us->prev->next = us->next;
	else
		sv->idle = us->next;
	if (us->next)
		us->next->prev = us->prev;
	else
		sv->idle_tail = us->prev;
	us->prev = us->next = NULL;
	sv->n_idle--;
}

static void pool_close(struct upstream_server *sv)
{
	while (sv->idle) {
		struct usock *us = sv->idle;
		idle_unlink(sv, us);
		usock_close(us);
	}
}

/** Has the socket carried its last question? */
static bool usock_spent(const struct usock *us, ev_tstamp now)
{
	return us->uses >= USOCK_USES || now - us->born >= USOCK_AGE;
}

/** Close the sockets idle too long; stop when none is left. */
static void sweep_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct upstreams *u = w->data;
	ev_tstamp now = ev_now(loop);
	bool any = false;
	(void)revents;

	for (size_t i = 0; i < u->n; i++) {
		struct upstream_server *sv = &u->servers[i];
		struct usock *us;
		while ((us = sv->idle_tail) &&
		       (now - us->idle_since >= USOCK_IDLE || usock_spent(us, now))) {
			idle_unlink(sv, us);
			usock_close(us);
		}
		any |= sv->idle != NULL;
	}
	if (!any)
		ev_timer_stop(loop, w);
}

static void udp_reply(struct attempt *a);

static void usock_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct usock *us = w->data;
	uint8_t buf[512];
	(void)loop;
	(void)revents;

	if (us->owner) {
		udp_reply(us->owner);
		return;
	}
	/* Idle: a late reply to an earlier question, read and dropped, or an
	 * ICMP error, and the socket is closed. */
	for (int i = 0; i < 64; i++) {
		if (recv(us->fd, buf, sizeof(buf), 0) >= 0)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return;
		if (errno != EINTR)
			break;
	}
	struct upstream_server *sv = server_of(us->u, &us->addr);
	if (sv)
		idle_unlink(sv, us);
	usock_close(us);
}

static int bind_random_port(int fd, int family);

/**
 * A socket to addr: the pool's most recently used, else a new one.
 * @return NULL with *hard set when no socket can be had at all, or with it
 *         clear when the connect failed (the server is unreachable)
 */
static struct usock *usock_get(struct upstreams *u, const struct cfg_addr *addr, bool *hard)
{
	struct upstream_server *sv = server_of(u, addr);
	ev_tstamp now = ev_now(u->srv->loop);
	struct usock *us;
	int fd;

	*hard = false;
	while (sv && (us = sv->idle)) {
		idle_unlink(sv, us);
		if (!usock_spent(us, now))
			return us;
		usock_close(us);
	}
	fd = socket(addr->ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || !(us = calloc(1, sizeof(*us)))) {
		log_warn("upstream socket: %s", strerror(errno));
		if (fd >= 0)
			close(fd);
		*hard = true;
		return NULL;
	}
	bind_random_port(fd, addr->ss.ss_family);
	if (connect(fd, (const struct sockaddr *)&addr->ss, addr->len) < 0) {
		close(fd);
		free(us);
		return NULL;
	}
	us->fd = fd;
	us->u = u;
	us->addr = *addr;
	us->born = now;
	u->n_sockets++;
	ev_io_init(&us->io, usock_cb, fd, EV_READ);
	us->io.data = us;
	ev_io_start(u->srv->loop, &us->io);
	return us;
}

/** An attempt is done with its socket: back to the pool, or closed when spent or broken. */
static void usock_release(struct usock *us, uint16_t id, bool healthy)
{
	struct upstreams *u = us->u;
	struct upstream_server *sv = server_of(u, &us->addr);
	ev_tstamp now = ev_now(u->srv->loop);

	us->owner = NULL;
	us->last_id = id;
	if (!healthy || !sv || u->closing || usock_spent(us, now) || sv->n_idle >= USOCK_IDLE_MAX) {
		usock_close(us);
		return;
	}
	us->idle_since = now;
	us->prev = NULL;
	us->next = sv->idle;
	if (sv->idle)
		sv->idle->prev = us;
	else
		sv->idle_tail = us;
	sv->idle = us;
	sv->n_idle++;
	if (!ev_is_active(&u->sweep))
		ev_timer_again(u->srv->loop, &u->sweep);
}

/* ---- attempts ---- */

static void attempt_close(struct attempt *a)
{
	if (a->fd < 0)
		return;
	if (a->us) {
		usock_release(a->us, a->id, !a->broken);
		a->us = NULL;
		a->fd = -1;
		return;
	}
	ev_io_stop(a->f->u->srv->loop, &a->io);
	close(a->fd);
	a->fd = -1;
	free(a->tbuf);
	a->tbuf = NULL;
	free(a->tquery);
	a->tquery = NULL;
}

static void inflight_free(struct inflight *f)
{
	struct ev_loop *loop = f->u->srv->loop;

	table_remove(f->u, f);
	for (int i = 0; i < f->n_att; i++)
		attempt_close(&f->att[i]);
	ev_timer_stop(loop, &f->retry);
	ev_timer_stop(loop, &f->patience);
	ev_timer_stop(loop, &f->deadline);
	free(f);
}

/**
 * Hand the question's end to its owner.  The question leaves the table
 * first, so that the owner may start the same question again at once.
 */
static void inflight_end(struct inflight *f, enum upstream_outcome outcome)
{
	struct cache_key key = { f->name, f->name_len, f->qtype, f->qclass, f->flags };

	table_remove(f->u, f);
	f->done(f->arg, outcome, &key, outcome == UPSTREAM_ANSWER ? &f->u->srv->answer : NULL,
		&f->waiters);
	inflight_free(f);
}

/** Every hope is gone: the owner answers stale or SERVFAIL, and the question ends. */
static void inflight_fail(struct inflight *f)
{
	inflight_end(f, UPSTREAM_FAILED);
}

/** A good reply, prepared in srv->answer: the owner caches it and answers. */
static void inflight_complete(struct inflight *f)
{
	inflight_end(f, UPSTREAM_ANSWER);
}

static void attempt_io_cb(struct ev_loop *loop, ev_io *w, int revents);
static bool send_next(struct inflight *f, bool tcp, const struct cfg_addr *tcp_addr);

/** The longest query we send: header, question, OPT. */
#define QUERY_MAX (WIRE_HDR + WIRE_NAME_MAX + 4 + 11)

static size_t build_query(const struct inflight *f, uint16_t id, uint8_t *out)
{
	uint16_t flags = WIRE_RD | ((f->flags & CACHE_KEY_CD) ? WIRE_CD : 0);
	size_t len;

	wire_put16(out, id);
	wire_put16(out + 2, flags);
	wire_put16(out + 4, 1);
	memset(out + 6, 0, 6);
	memcpy(out + WIRE_HDR, f->name, f->name_len);
	len = WIRE_HDR + f->name_len;
	wire_put16(out + len, f->qtype);
	wire_put16(out + len + 2, f->qclass);
	len += 4;
	return wire_opt_append(out, len, len + 11, 0, (f->flags & CACHE_KEY_DO) != 0, 0, NULL);
}

static int bind_random_port(int fd, int family)
{
	struct sockaddr_storage ss;
	socklen_t len;

	memset(&ss, 0, sizeof(ss));
	ss.ss_family = (sa_family_t)family;
	len = family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
	/* RFC 5452: the port is half of what a spoofer must guess. */
	for (int i = 0; i < 8; i++) {
		uint16_t port = (uint16_t)(1024 + random_uniform(65536 - 1024));
		if (family == AF_INET)
			((struct sockaddr_in *)&ss)->sin_port = htons(port);
		else
			((struct sockaddr_in6 *)&ss)->sin6_port = htons(port);
		if (bind(fd, (struct sockaddr *)&ss, len) == 0)
			return 0;
	}
	return 0; /* connect() binds an ephemeral port, also random on Linux */
}

/** Open a UDP attempt on a pooled socket and send.  @return false: no socket at all */
static bool attempt_udp(struct attempt *a, const struct cfg_addr *addr)
{
	struct inflight *f = a->f;
	bool hard;
	struct usock *us = usock_get(f->u, addr, &hard);

	if (!us) {
		if (hard)
			return false;
		server_error(f->u, addr);
		return true;
	}
	/* Never the ID of the socket's previous question, whose reply may be late. */
	while (us->uses > 0 && a->id == us->last_id)
		a->id = (uint16_t)random_uniform(65536);
	us->owner = a;
	us->uses++;
	a->us = us;
	a->fd = us->fd;
	uint8_t query[QUERY_MAX];
	size_t qlen = build_query(f, a->id, query);
	if (send(a->fd, query, qlen, 0) < 0) {
		a->broken = true;
		server_error(f->u, addr);
	}
	return true;
}

/** Open a TCP attempt; the query goes once connected.  @return false: no socket at all */
static bool attempt_tcp(struct attempt *a, const struct cfg_addr *addr)
{
	struct inflight *f = a->f;
	struct server *s = f->u->srv;
	int fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0 || !(a->tquery = malloc(QUERY_MAX + 2))) {
		log_warn("upstream socket: %s", strerror(fd < 0 ? errno : ENOMEM));
		if (fd >= 0)
			close(fd);
		return false;
	}
	if (connect(fd, (const struct sockaddr *)&addr->ss, addr->len) < 0 && errno != EINPROGRESS) {
		close(fd);
		free(a->tquery);
		a->tquery = NULL;
		server_error(f->u, addr);
		return true;
	}
	a->fd = fd;
	size_t n = build_query(f, a->id, a->tquery + 2);
	wire_put16(a->tquery, (uint16_t)n);
	a->qlen = (uint16_t)(n + 2);
	ev_io_init(&a->io, attempt_io_cb, fd, EV_WRITE);
	a->io.data = a;
	ev_io_start(s->loop, &a->io);
	STAT_INC(s->stats.upstream_tcp);
	return true;
}

/**
 * Start one attempt to addr.  A connect() that fails at once still takes
 * the slot, closed, so it counts as a try of that server.
 * @return false when no socket could be had at all
 */
static bool attempt_start(struct inflight *f, const struct cfg_addr *addr, bool tcp)
{
	struct server *s = f->u->srv;
	struct attempt *a = &f->att[f->n_att];

	memset(a, 0, sizeof(*a));
	a->f = f;
	a->fd = -1;
	a->tcp = tcp;
	a->addr = *addr;
	a->id = (uint16_t)random_uniform(65536);
	a->sent = ev_now(s->loop);
	if (!(tcp ? attempt_tcp(a, addr) : attempt_udp(a, addr)))
		return false;
	f->n_att++;
	if (a->fd < 0)
		return true;
	STAT_INC(s->stats.upstream_sent);
	struct upstream_server *sv = server_of(f->u, addr);
	if (sv)
		sv->n.sent++;
	return true;
}

/** Choose the server for the next attempt: fewest tries in this question, then best RTT. */
static const struct cfg_addr *pick_server(struct inflight *f, ev_tstamp now)
{
	struct upstreams *u = f->u;
	const struct upstream_server *best = NULL;
	double best_score = 0;

	for (size_t i = 0; i < u->n; i++) {
		const struct upstream_server *sv = &u->servers[i];
		int tries = 0;
		for (int j = 0; j < f->n_att; j++)
			tries += config_addr_equal(&f->att[j].addr, &sv->addr);
		double rtt = !sv->measured ? RTO_UNKNOWN
			     : (now - sv->changed > RTT_FORGET && sv->srtt > RTO_UNKNOWN) ? RTO_UNKNOWN
			     : sv->srtt;
		double score = tries * 100.0 + rtt;
		if (!best || score < best_score) {
			best = sv;
			best_score = score;
		}
	}
	return best ? &best->addr : NULL;
}

/** Any attempt still open? */
static bool attempts_open(const struct inflight *f)
{
	for (int i = 0; i < f->n_att; i++)
		if (f->att[i].fd >= 0)
			return true;
	return false;
}

/**
 * Send the next attempt (to tcp_addr over TCP when set) and arm the retry
 * timer.  @return false when nothing more can be tried.
 */
static bool send_next(struct inflight *f, bool tcp, const struct cfg_addr *tcp_addr)
{
	struct server *s = f->u->srv;
	ev_tstamp now = ev_now(s->loop);

	while (f->n_att < MAX_ATTEMPTS) {
		const struct cfg_addr *addr = tcp ? tcp_addr : pick_server(f, now);
		if (!addr)
			return false;
		if (!attempt_start(f, addr, tcp))
			return attempts_open(f);
		if (f->att[f->n_att - 1].fd < 0) {
			tcp = false; /* connect failed at once: on to the next server */
			continue;
		}
		int tries = 0;
		for (int j = 0; j < f->n_att; j++)
			tries += config_addr_equal(&f->att[j].addr, addr);
		double rto = server_rto(server_of(f->u, addr)) * (1 << (tries - 1));
		if (tcp)
			rto = RTO_MAX;
		f->retry.repeat = rto > RTO_MAX ? RTO_MAX : rto;
		ev_timer_again(s->loop, &f->retry);
		return true;
	}
	return attempts_open(f);
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct inflight *f = w->data;
	(void)revents;

	ev_timer_stop(loop, w);
	if (f->n_att > 0) {
		struct attempt *last = &f->att[f->n_att - 1];
		struct upstream_server *sv = server_of(f->u, &last->addr);
		STAT_INC(f->u->srv->stats.upstream_timeouts);
		if (sv)
			sv->n.timeouts++;
		server_penalise(sv, ev_now(loop));
	}
	/* With every try spent, the deadline decides. */
	send_next(f, false, NULL);
}

static void patience_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct inflight *f = w->data;
	(void)loop;
	(void)revents;

	/* RFC 8767: a stale answer now beats a fresh one too late; the
	 * question goes on so that the cache is refreshed. */
	f->late = true;
	struct cache_key key = { f->name, f->name_len, f->qtype, f->qclass, f->flags };
	f->done(f->arg, UPSTREAM_LATE, &key, NULL, &f->waiters);
}

static void deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct inflight *f = w->data;
	(void)loop;
	(void)revents;

	inflight_fail(f);
}

/** An attempt ended without a usable reply: try another, or give up. */
static void attempt_failed(struct attempt *a)
{
	struct inflight *f = a->f;

	struct cfg_addr addr = a->addr;
	attempt_close(a);
	server_error(f->u, &addr);
	if (!send_next(f, false, NULL) && !attempts_open(f))
		inflight_fail(f);
}

/** The server answered SERVFAIL, REFUSED or the like: ask each other server once. */
static void attempt_refused(struct attempt *a)
{
	struct inflight *f = a->f;
	struct upstreams *u = f->u;
	bool untried = false;

	struct cfg_addr addr = a->addr;
	attempt_close(a);
	server_error(u, &addr);
	for (size_t i = 0; i < u->n && !untried; i++) {
		bool asked = false;
		for (int j = 0; j < f->n_att; j++)
			asked |= config_addr_equal(&f->att[j].addr, &u->servers[i].addr);
		untried = !asked;
	}
	if (untried && send_next(f, false, NULL))
		return;
	if (!attempts_open(f))
		inflight_fail(f);
}

/**
 * Check a reply against what this attempt asked.
 * @return 1 accepted (prepared in srv->answer), 0 to ignore, -1 a server error
 */
static int check_reply(struct attempt *a, const uint8_t *msg, size_t len)
{
	struct inflight *f = a->f;
	struct server *s = f->u->srv;
	uint8_t name[WIRE_NAME_MAX + 1];
	size_t pos = WIRE_HDR;
	uint16_t flags;

	if (len < WIRE_HDR || wire_get16(msg) != a->id)
		return 0;
	flags = wire_get16(msg + 2);
	if (!(flags & WIRE_QR) || WIRE_OPCODE(flags) != LDNS_PACKET_QUERY || wire_get16(msg + 4) != 1)
		return 0;
	if (wire_name_read(msg, len, &pos, name) != f->name_len ||
	    memcmp(name, f->name, f->name_len) != 0 || pos + 4 > len ||
	    wire_get16(msg + pos) != f->qtype || wire_get16(msg + pos + 2) != f->qclass)
		return 0;
	switch (WIRE_RCODE(flags)) {
	case LDNS_RCODE_NOERROR:
	case LDNS_RCODE_NXDOMAIN:
	case LDNS_RCODE_YXDOMAIN:
		break;
	default:
		return -1; /* SERVFAIL, REFUSED, FORMERR, NOTIMP: ask another */
	}
	if ((flags & WIRE_TC) && !a->tcp)
		return 1;
	if (cache_prepare(msg, len, &s->ttl, &s->answer) < 0)
		return 0;
	return 1;
}

static void udp_reply(struct attempt *a)
{
	struct inflight *f = a->f;
	struct server *s = f->u->srv;
	uint8_t buf[65536];

	for (;;) {
		ssize_t n = recv(a->fd, buf, sizeof(buf), 0);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				return;
			/* ICMP unreachable: the server is not there. */
			server_penalise(server_of(f->u, &a->addr), ev_now(s->loop));
			a->broken = true;
			attempt_failed(a);
			return;
		}
		if (n >= 2 && a->us->uses > 1 && wire_get16(buf) == a->us->last_id)
			continue; /* the late reply to the socket's previous question */
		int rc = check_reply(a, buf, (size_t)n);
		if (rc == 0) {
			STAT_INC(s->stats.upstream_bogus);
			continue;
		}
		server_sample(server_of(f->u, &a->addr), ev_now(s->loop) - a->sent, ev_now(s->loop));
		if (rc < 0) {
			attempt_refused(a);
			return;
		}
		if (wire_get16(buf + 2) & WIRE_TC) {
			struct cfg_addr addr = a->addr;
			attempt_close(a);
			if (!send_next(f, true, &addr) && !attempts_open(f))
				inflight_fail(f);
			return;
		}
		inflight_complete(f);
		return;
	}
}

static void tcp_io(struct attempt *a, int revents)
{
	struct inflight *f = a->f;
	struct server *s = f->u->srv;

	if (revents & EV_WRITE) {
		if (!a->tcp_connected) {
			int err = 0;
			socklen_t el = sizeof(err);
			getsockopt(a->fd, SOL_SOCKET, SO_ERROR, &err, &el);
			if (err) {
				attempt_failed(a);
				return;
			}
			a->tcp_connected = true;
		}
		ssize_t n = send(a->fd, a->tquery + a->qsent, a->qlen - a->qsent, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR)
				attempt_failed(a);
			return;
		}
		a->qsent = (uint16_t)(a->qsent + n);
		if (a->qsent == a->qlen) {
			ev_io_stop(s->loop, &a->io);
			ev_io_set(&a->io, a->fd, EV_READ);
			ev_io_start(s->loop, &a->io);
		}
		return;
	}
	if (!a->tbuf && !(a->tbuf = malloc(65535 + 2))) {
		attempt_failed(a);
		return;
	}
	ssize_t n = read(a->fd, a->tbuf + a->tlen, 65537 - a->tlen);
	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR)
			attempt_failed(a);
		return;
	}
	if (n == 0) {
		attempt_failed(a); /* closed before a whole answer */
		return;
	}
	a->tlen += (size_t)n;
	if (a->tlen < 2 || a->tlen < 2 + (size_t)wire_get16(a->tbuf))
		return;
	int rc = check_reply(a, a->tbuf + 2, wire_get16(a->tbuf));
	if (rc == 0) {
		STAT_INC(s->stats.upstream_bogus);
		attempt_failed(a);
		return;
	}
	server_sample(server_of(f->u, &a->addr), ev_now(s->loop) - a->sent, ev_now(s->loop));
	if (rc < 0) {
		attempt_refused(a);
		return;
	}
	inflight_complete(f);
}

static void attempt_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct attempt *a = w->data;
	(void)loop;

	tcp_io(a, revents);
}

/** Double the table when it holds twice as many questions as slots: rehash every question. */
static void table_grow(struct upstreams *u)
{
	size_t n = (u->mask + 1) * 4;
	struct inflight **t = calloc(n, sizeof(*t));

	if (!t)
		return;
	for (size_t i = 0; i <= u->mask; i++) {
		struct inflight *x = u->table[i], *next;
		for (; x; x = next) {
			next = x->hnext;
			x->hnext = t[x->hash & (n - 1)];
			t[x->hash & (n - 1)] = x;
		}
	}
	free(u->table);
	u->table = t;
	u->mask = n - 1;
}

void **upstream_resolve(struct upstreams *u, const struct cache_key *key, upstream_done_fn done,
			void *arg, bool *late)
{
	struct server *s = u->srv;
	uint64_t h = cache_key_hash(key);
	struct inflight **pp = slot_of(u, key, h), *f = *pp;

	if (f) {
		STAT_INC(s->stats.merged);
		*late = f->late;
		return &f->waiters;
	}
	*late = false;
	if (u->count >= UPSTREAM_MAX_INFLIGHT) {
		STAT_INC(s->stats.inflight_full);
		return NULL;
	}
	if (u->n == 0 || !(f = calloc(1, sizeof(*f))))
		return NULL;
	f->hash = h;
	f->u = u;
	memcpy(f->name, key->name, key->name_len);
	f->name_len = key->name_len;
	f->qtype = key->qtype;
	f->qclass = key->qclass;
	f->flags = key->flags;
	f->done = done;
	f->arg = arg;
	ev_init(&f->retry, retry_cb);
	ev_timer_init(&f->patience, patience_cb, UPSTREAM_PATIENCE, 0);
	ev_timer_init(&f->deadline, deadline_cb, UPSTREAM_DEADLINE, 0);
	f->retry.data = f->patience.data = f->deadline.data = f;
	*pp = f;
	u->count++;
	if (!send_next(f, false, NULL)) {
		inflight_free(f);   /* nobody waits yet: the caller answers */
		return NULL;
	}
	ev_timer_start(s->loop, &f->patience);
	ev_timer_start(s->loop, &f->deadline);
	if (u->count > (u->mask + 1) * 2)
		table_grow(u);
	return &f->waiters;
}

void upstream_free(struct upstreams *u)
{
	if (!u)
		return;
	u->closing = true;
	for (size_t i = 0; i <= u->mask; i++) {
		while (u->table[i]) {
			inflight_end(u->table[i], UPSTREAM_ABANDONED);
		}
	}
	for (size_t i = 0; i < u->n; i++)
		pool_close(&u->servers[i]);
	ev_timer_stop(u->srv->loop, &u->sweep);
	stop_watches(u);
	free(u->table);
	free(u->servers);
	free(u->self);
	free(u);
}
