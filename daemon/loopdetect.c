/**
 * \file loopdetect.c
 * Probes that find upstream servers leading back to us (see loopdetect.h).
 * The probes go out on sockets of this module's own, not upstream.c's
 * pools: a probe is not a client's question, must never be retried at
 * another server, and its answer is never cached.
 */
#include "autoconf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "address.h"
#include "log.h"
#include "loopdetect.h"
#include "random.h"
#include "server.h"
#include "wire.h"

#define TOKEN_LEN 16          /* hex digits in a probe's first label: 64 random bits */

enum probe_state {
	PROBE_WAITING,
	PROBE_ANSWERED,           /**< the server answered: it is not a loop */
	PROBE_LOOP,               /**< the probe came back to a listener */
};

struct probe {
	struct cfg_addr server;
	char token[TOKEN_LEN + 1];
	uint16_t id;
	enum probe_state state;
};

struct loopdetect {
	struct server *srv;
	int fd4, fd6;             /**< -1 until first needed */
	ev_io io4, io6;
	ev_timer wait;            /**< the end of a check */
	struct probe *probes;
	size_t n;
	bool first_done;          /**< the first check since start is over */
	loopdetect_found_fn found;
	void *found_arg;
};

static const uint8_t suffix_wire[] = "\013acrdns-loop\004test";  /* with the terminating 0 */

bool loopdetect_is_probe(const uint8_t *qname, size_t len)
{
	size_t sl = sizeof(suffix_wire);
	size_t pos = 0;

	/* Walk label by label so that a suffix match starts at a label. */
	while (pos < len && len - pos >= sl) {
		if (strncasecmp((const char *)qname + pos, (const char *)suffix_wire, sl - 1) == 0 &&
		    qname[pos + sl - 1] == 0 && len - pos == sl)
			return true;
		if (qname[pos] == 0)
			break;
		pos += 1u + qname[pos];
	}
	return false;
}

struct loopdetect *loopdetect_new(struct server *s, loopdetect_found_fn found, void *arg)
{
	struct loopdetect *ld = calloc(1, sizeof(*ld));

	if (!ld)
		return NULL;
	ld->srv = s;
	ld->found = found;
	ld->found_arg = arg;
	ld->fd4 = ld->fd6 = -1;
	return ld;
}

static void close_fd(struct loopdetect *ld, int *fd, ev_io *io)
{
	if (*fd < 0)
		return;
	ev_io_stop(ld->srv->loop, io);
	close(*fd);
	*fd = -1;
}

void loopdetect_free(struct loopdetect *ld)
{
	if (!ld)
		return;
	ev_timer_stop(ld->srv->loop, &ld->wait);
	close_fd(ld, &ld->fd4, &ld->io4);
	close_fd(ld, &ld->fd6, &ld->io6);
	free(ld->probes);
	free(ld);
}

/** The first check is over once every server answered, looped or had its time. */
static void maybe_done(struct loopdetect *ld)
{
	for (size_t i = 0; i < ld->n; i++)
		if (ld->probes[i].state == PROBE_WAITING)
			return;
	ev_timer_stop(ld->srv->loop, &ld->wait);
	ld->first_done = true;
}

static void wait_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct loopdetect *ld = w->data;
	(void)loop;
	(void)revents;

	/* Silent servers are down or slow, not loops: upstream.c deals with those. */
	ld->first_done = true;
}

/** The probe's token from a wire name <token>.acrdns-loop.test, or NULL. */
static const char *token_of(const uint8_t *qname, size_t len, char *buf)
{
	if (len != 1u + TOKEN_LEN + sizeof(suffix_wire) || qname[0] != TOKEN_LEN ||
	    !loopdetect_is_probe(qname, len))
		return NULL;
	for (size_t i = 0; i < TOKEN_LEN; i++) {
		char c = (char)qname[1 + i];
		buf[i] = c >= 'A' && c <= 'F' ? (char)(c - 'A' + 'a') : c; /* 0x20 case randomisation */
	}
	buf[TOKEN_LEN] = '\0';
	return buf;
}

static struct probe *find(struct loopdetect *ld, const char *token)
{
	for (size_t i = 0; i < ld->n; i++)
		if (strcmp(ld->probes[i].token, token) == 0)
			return &ld->probes[i];
	return NULL;
}

/** A reply to a probe: its server answered without coming back to us. */
static void reply_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct loopdetect *ld = w->data;
	uint8_t msg[1500], name[WIRE_NAME_MAX + 1];
	char tok[TOKEN_LEN + 1];
	(void)loop;
	(void)revents;

	for (int i = 0; i < 64; i++) {
		ssize_t r = recv(w->fd, msg, sizeof(msg), 0);
		if (r < 0)
			return; /* EAGAIN, or an ICMP error: the server is unreachable, not a loop */
		size_t pos = WIRE_HDR;
		int n;
		if (r < WIRE_HDR || !(wire_get16(msg + 2) & WIRE_QR) || wire_get16(msg + 4) != 1 ||
		    (n = wire_name_read(msg, (size_t)r, &pos, name)) < 0)
			continue;
		const char *t = token_of(name, (size_t)n, tok);
		struct probe *p = t ? find(ld, t) : NULL;
		if (p && p->id == wire_get16(msg) && p->state == PROBE_WAITING) {
			p->state = PROBE_ANSWERED;
			maybe_done(ld);
		}
	}
}

/** @return the family's probe socket, opened on first use, or -1. */
static int socket_for(struct loopdetect *ld, int family)
{
	int *fd = family == AF_INET ? &ld->fd4 : &ld->fd6;
	ev_io *io = family == AF_INET ? &ld->io4 : &ld->io6;

	if (*fd >= 0)
		return *fd;
	/* Unbound: the kernel picks an ephemeral port.  Spoofing a reply
	 * only makes us miss a loop for one check; nothing is cached. */
	*fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (*fd < 0)
		return -1;
	ev_io_init(io, reply_cb, *fd, EV_READ);
	io->data = ld;
	ev_io_start(ld->srv->loop, io);
	return *fd;
}

/** Build a probe query: <token>.acrdns-loop.test, type TXT, RD. */
static size_t build(const struct probe *p, uint8_t *out)
{
	size_t len = WIRE_HDR;

	memset(out, 0, WIRE_HDR);
	wire_put16(out, p->id);
	wire_put16(out + 2, WIRE_RD);
	wire_put16(out + 4, 1);
	out[len++] = TOKEN_LEN;
	memcpy(out + len, p->token, TOKEN_LEN);
	len += TOKEN_LEN;
	memcpy(out + len, suffix_wire, sizeof(suffix_wire));
	len += sizeof(suffix_wire);
	wire_put16(out + len, LDNS_RR_TYPE_TXT);
	wire_put16(out + len + 2, LDNS_RR_CLASS_IN);
	return len + 4;
}

/** Is addr the server of one of the first n probes? */
static bool probed(const struct loopdetect *ld, const struct cfg_addr *addr)
{
	for (size_t i = 0; i < ld->n; i++)
		if (address_equal(&ld->probes[i].server, addr))
			return true;
	return false;
}

void loopdetect_check(struct loopdetect *ld, const struct cfg_addr *servers, size_t n)
{
	uint8_t msg[WIRE_HDR + 1 + TOKEN_LEN + sizeof(suffix_wire) + 4];
	char name[64];

	if (!ld)
		return;
	free(ld->probes);
	ld->probes = NULL;
	ld->n = 0;
	ev_timer_stop(ld->srv->loop, &ld->wait);
	if (n && !(ld->probes = calloc(n, sizeof(*ld->probes)))) {
		log_warn("loop detection: out of memory; upstream servers not checked");
		ld->first_done = true;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (probed(ld, &servers[i]))
			continue;   /* in two zones' sets: one probe says it for both */
		struct probe *p = &ld->probes[ld->n];
		int fd = socket_for(ld, servers[i].ss.ss_family);
		address_str((const struct sockaddr *)&servers[i].ss, name, sizeof(name));
		memset(p, 0, sizeof(*p));
		p->server = servers[i];
		for (size_t k = 0; k < TOKEN_LEN; k++)
			p->token[k] = "0123456789abcdef"[random_uniform(16)];
		p->id = (uint16_t)random_uniform(65536);
		size_t len = build(p, msg);
		if (fd < 0 || sendto(fd, msg, len, 0, (const struct sockaddr *)&p->server.ss,
				     p->server.len) != (ssize_t)len) {
			/* Unreachable now: upstream.c will find out too; not a loop. */
			log_info("loop detection: cannot send a probe to %s: %s", name, strerror(errno));
			continue;
		}
		log_debug("loop detection: probe %s.%s sent to %s", p->token, LOOPDETECT_SUFFIX, name);
		ld->n++;
	}
	if (ld->n == 0) {
		ld->first_done = true;
		return;
	}
	ev_timer_init(&ld->wait, wait_cb, LOOPDETECT_WAIT, 0);
	ld->wait.data = ld;
	ev_timer_start(ld->srv->loop, &ld->wait);
}

bool loopdetect_arrived(struct loopdetect *ld, const uint8_t *qname, size_t len,
			const struct sockaddr_storage *peer)
{
	char tok[TOKEN_LEN + 1], server[64], from[64];
	const char *t = ld ? token_of(qname, len, tok) : NULL;
	struct probe *p = t ? find(ld, t) : NULL;

	if (!p)
		return false;
	if (p->state == PROBE_LOOP)
		return true;  /* a second copy of the same probe (a retry on the way) */
	p->state = PROBE_LOOP;
	STAT_INC(ld->srv->stats.upstream_loops);
	address_str((const struct sockaddr *)&p->server.ss, server, sizeof(server));
	address_str((const struct sockaddr *)peer, from, sizeof(from));
	log_err("upstream %s is a loop: a probe sent to it came back to acrdnsd from %s "
		"(acrdnsd -> %s -> ... -> %s -> acrdnsd); dropped until the upstream list changes. "
		"Forward to the real servers instead (with systemd-resolved: "
		"file:/run/systemd/resolve/resolv.conf)", server, server, from, from);
	if (ld->found)
		ld->found(ld->found_arg, &p->server);
	maybe_done(ld);
	return true;
}

bool loopdetect_pending(const struct loopdetect *ld)
{
	return ld && !ld->first_done;
}

void loopdetect_each_loop(const struct loopdetect *ld,
			  void (*cb)(void *arg, const struct cfg_addr *server), void *arg)
{
	for (size_t i = 0; ld && i < ld->n; i++)
		if (ld->probes[i].state == PROBE_LOOP)
			cb(arg, &ld->probes[i].server);
}
