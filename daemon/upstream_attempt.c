/**
 * \file upstream_attempt.c
 * Attempts: building the query, sending it over UDP (a pooled socket) or
 * TCP (a socket of its own, the query sent once connected), and checking
 * what comes back.
 */
#include "autoconf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "random.h"
#include "server.h"
#include "upstream_attempt.h"

void upstream_attempt_close(struct upstream_attempt *a)
{
	if (a->fd < 0)
		return;
	if (a->us) {
		upstream_pool_put(a->us, a->id, !a->broken);
		a->us = NULL;
		a->fd = -1;
		return;
	}
	ev_io_stop(a->sv->srv->loop, &a->io);
	close(a->fd);
	a->fd = -1;
	free(a->tbuf);
	a->tbuf = NULL;
	free(a->tquery);
	a->tquery = NULL;
}

/** The longest query we send: header, question, OPT. */
#define QUERY_MAX (WIRE_HDR + WIRE_NAME_MAX + 4 + 11)

static size_t build_query(const struct upstream_question *f, uint16_t id, bool edns, uint8_t *out)
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
	if (!edns)
		return len; /* no OPT, so no DO either: the server rejected EDNS */
	return wire_opt_append(out, len, len + 11, 0, (f->flags & CACHE_KEY_DO) != 0, 0, NULL);
}

/** The attempt ended without a usable reply: close, count, tell the owner. */
static void attempt_end(struct upstream_attempt *a, enum upstream_attempt_end end)
{
	struct cfg_addr addr = a->addr;

	upstream_attempt_close(a);
	if (end != UPSTREAM_ATTEMPT_TRUNCATED && end != UPSTREAM_ATTEMPT_NOEDNS)
		upstream_server_error(a->sv, &addr);
	a->ended(a->owner, a, end);
}

/** Does the message carry an OPT record?  A message that does not parse counts as one that does. */
static bool has_opt(const uint8_t *msg, size_t len)
{
	size_t pos = WIRE_HDR;
	unsigned total = (unsigned)wire_get16(msg + 6) + wire_get16(msg + 8) + wire_get16(msg + 10);
	struct wire_rr rr;

	if (wire_name_read(msg, len, &pos, NULL) < 0)
		return true;
	pos += 4;
	for (unsigned i = 0; i < total; i++) {
		if (wire_rr_next(msg, len, &pos, &rr) < 0)
			return true;
		if (rr.type == LDNS_RR_TYPE_OPT)
			return true;
	}
	return false;
}

/**
 * Check a reply against what this attempt asked.
 * @return 1 accepted (prepared in srv->answer), 0 to ignore, -1 a server
 * error (a->rcode says which), -2 EDNS rejected (FORMERR or NOTIMP without
 * OPT to a query with OPT)
 */
static int check_reply(struct upstream_attempt *a, const uint8_t *msg, size_t len)
{
	const struct upstream_question *f = a->q;
	struct server *s = a->sv->srv;
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
	case LDNS_RCODE_FORMERR:
	case LDNS_RCODE_NOTIMPL:
		/* RFC 6891 7: a server that does not know EDNS answers so without
		 * OPT.  Only a reply that passed the source, ID and question checks
		 * above gets here, so a spoofer cannot turn EDNS off. */
		if (a->edns && !has_opt(msg, len))
			return -2;
		a->rcode = (uint8_t)WIRE_RCODE(flags);
		return -1;
	default:
		a->rcode = (uint8_t)WIRE_RCODE(flags);
		return -1; /* SERVFAIL, REFUSED: ask another */
	}
	if ((flags & WIRE_TC) && !a->tcp)
		return 1;
	if (cache_prepare(msg, len, &s->ttl, &s->answer) < 0)
		return 0;
	return 1;
}

/** The server rejected EDNS: remember it, so that the owner's next try goes without OPT. */
static void ended_noedns(struct upstream_attempt *a)
{
	upstream_server_noedns(upstream_server_of(a->sv, &a->addr), ev_now(a->sv->srv->loop));
	attempt_end(a, UPSTREAM_ATTEMPT_NOEDNS);
}

/**
 * A reply from the server asked, with our ID and question (rc from
 * check_reply, not 0): it counts as an RTT sample whatever it says, then
 * ends the attempt as check_reply and the TC bit say.
 */
static void reply_checked(struct upstream_attempt *a, int rc, bool truncated)
{
	struct server *s = a->sv->srv;

	upstream_server_sample(upstream_server_of(a->sv, &a->addr), ev_now(s->loop) - a->sent,
			       ev_now(s->loop));
	if (rc == -2)
		ended_noedns(a);
	else if (rc < 0)
		attempt_end(a, UPSTREAM_ATTEMPT_REFUSED);
	else if (truncated)
		attempt_end(a, UPSTREAM_ATTEMPT_TRUNCATED);
	else
		a->ended(a->owner, a, UPSTREAM_ATTEMPT_ANSWER);
}

static void udp_readable(void *owner)
{
	struct upstream_attempt *a = owner;
	struct server *s = a->sv->srv;
	uint8_t buf[65536];

	for (;;) {
		ssize_t n = recv(a->fd, buf, sizeof(buf), 0);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				return;
			/* ICMP unreachable: the server is not there. */
			upstream_server_penalise(upstream_server_of(a->sv, &a->addr), ev_now(s->loop));
			a->broken = true;
			a->error = "unreachable";
			attempt_end(a, UPSTREAM_ATTEMPT_FAILED);
			return;
		}
		if (n >= 2 && a->us->uses > 1 && wire_get16(buf) == a->us->last_id)
			continue; /* the late reply to the socket's previous question */
		int rc = check_reply(a, buf, (size_t)n);
		if (rc == 0) {
			STAT_INC(s->stats.upstream_bogus);
			continue;
		}
		reply_checked(a, rc, wire_get16(buf + 2) & WIRE_TC);
		return;
	}
}

/** TCP, writable: connected (or not), then the query, as far as the socket takes it. */
static void tcp_write(struct upstream_attempt *a)
{
	struct server *s = a->sv->srv;

	if (!a->tcp_connected) {
		int err = 0;
		socklen_t el = sizeof(err);
		getsockopt(a->fd, SOL_SOCKET, SO_ERROR, &err, &el);
		if (err) {
			a->error = "refused the TCP connection";
			attempt_end(a, UPSTREAM_ATTEMPT_FAILED);
			return;
		}
		a->tcp_connected = true;
	}
	ssize_t n = send(a->fd, a->tquery + a->qsent, a->qlen - a->qsent, MSG_NOSIGNAL);
	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR) {
			a->error = "broke the TCP connection";
			attempt_end(a, UPSTREAM_ATTEMPT_FAILED);
		}
		return;
	}
	a->qsent = (uint16_t)(a->qsent + n);
	if (a->qsent == a->qlen) {
		ev_io_stop(s->loop, &a->io);
		ev_io_set(&a->io, a->fd, EV_READ);
		ev_io_start(s->loop, &a->io);
	}
}

/** TCP, readable: gather the reply; once whole, check it and say how the attempt ended. */
static void tcp_read(struct upstream_attempt *a)
{
	struct server *s = a->sv->srv;

	if (!a->tbuf && !(a->tbuf = malloc(65535 + 2))) {
		a->error = "could not be read: out of memory";
		attempt_end(a, UPSTREAM_ATTEMPT_FAILED);
		return;
	}
	ssize_t n = read(a->fd, a->tbuf + a->tlen, 65537 - a->tlen);
	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR) {
			a->error = "broke the TCP connection";
			attempt_end(a, UPSTREAM_ATTEMPT_FAILED);
		}
		return;
	}
	if (n == 0) {
		a->error = "closed the TCP connection before a whole answer";
		attempt_end(a, UPSTREAM_ATTEMPT_FAILED); /* closed before a whole answer */
		return;
	}
	a->tlen += (size_t)n;
	if (a->tlen < 2 || a->tlen < 2 + (size_t)wire_get16(a->tbuf))
		return;
	int rc = check_reply(a, a->tbuf + 2, wire_get16(a->tbuf));
	if (rc == 0) {
		STAT_INC(s->stats.upstream_bogus);
		a->error = "sent an unusable reply over TCP";
		attempt_end(a, UPSTREAM_ATTEMPT_FAILED);
		return;
	}
	reply_checked(a, rc, false);
}

static void attempt_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct upstream_attempt *a = w->data;
	(void)loop;

	if (revents & EV_WRITE)
		tcp_write(a);
	else
		tcp_read(a);
}

/** Open a UDP attempt on a pooled socket and send.  @return false: no socket at all */
static bool attempt_udp(struct upstream_attempt *a, const struct cfg_addr *addr)
{
	struct upstream_server *s = upstream_server_of(a->sv, addr);
	bool hard;
	struct upstream_sock *us = upstream_pool_get(&a->sv->pools, s ? s->pool : NULL, addr,
						     udp_readable, a, &hard);

	if (!us) {
		if (hard)
			return false;
		upstream_server_error(a->sv, addr);
		return true;
	}
	/* Never the ID of the socket's previous question, whose reply may be late. */
	while (us->uses > 0 && a->id == us->last_id)
		a->id = (uint16_t)random_uniform(65536);
	us->uses++;
	a->us = us;
	a->fd = us->fd;
	uint8_t query[QUERY_MAX];
	size_t qlen = build_query(a->q, a->id, a->edns, query);
	if (send(a->fd, query, qlen, 0) < 0) {
		a->broken = true;
		upstream_server_error(a->sv, addr);
	}
	return true;
}

/** Open a TCP attempt; the query goes once connected.  @return false: no socket at all */
static bool attempt_tcp(struct upstream_attempt *a, const struct cfg_addr *addr)
{
	struct server *s = a->sv->srv;
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
		upstream_server_error(a->sv, addr);
		return true;
	}
	a->fd = fd;
	size_t n = build_query(a->q, a->id, a->edns, a->tquery + 2);
	wire_put16(a->tquery, (uint16_t)n);
	a->qlen = (uint16_t)(n + 2);
	ev_io_init(&a->io, attempt_io_cb, fd, EV_WRITE);
	a->io.data = a;
	ev_io_start(s->loop, &a->io);
	STAT_INC(s->stats.upstream_tcp);
	return true;
}

bool upstream_attempt_start(struct upstream_attempt *a, struct upstream_servers *sv,
			    const struct upstream_question *q, const struct cfg_addr *addr, bool tcp,
			    upstream_attempt_fn ended, void *owner)
{
	struct server *s = sv->srv;

	memset(a, 0, sizeof(*a));
	a->sv = sv;
	a->q = q;
	a->ended = ended;
	a->owner = owner;
	a->fd = -1;
	a->tcp = tcp;
	a->addr = *addr;
	a->id = (uint16_t)random_uniform(65536);
	a->sent = ev_now(s->loop);
	a->edns = upstream_server_edns(upstream_server_of(sv, addr), a->sent);
	if (!(tcp ? attempt_tcp(a, addr) : attempt_udp(a, addr)))
		return false;
	if (a->fd < 0)
		return true;
	STAT_INC(s->stats.upstream_sent);
	struct upstream_server *us = upstream_server_of(sv, addr);
	if (us)
		us->n.sent++;
	return true;
}
