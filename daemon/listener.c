/**
 * \file listener.c
 * UDP and TCP sockets for clients.  UDP is drained in batches per wake-up;
 * TCP connections carry several queries, answered in whatever order they
 * complete, with a cap on connections, on queries in flight per
 * connection, on buffered output, and an idle timeout.
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "address.h"
#include "listener.h"
#include "log.h"
#include "notify.h"
#include "server.h"

#define UDP_BATCH 32
#define TCP_MAX_PENDING 64
#define TCP_WBUF_MAX (512 * 1024)
#define TCP_RBUF (65535 + 2)

struct tcp_conn {
	struct tcp_conn *prev, *next;
	struct server *srv;
	int fd;
	ev_io rio, wio;
	ev_timer idle;
	ev_tstamp idle_timeout;
	/* Accept, a whole query read, or answer bytes written: a client that
	 * trickles a query a byte at a time, or does not read its answers,
	 * makes no progress and is closed at idle_timeout. */
	ev_tstamp last_progress;
	struct sockaddr_storage peer;
	socklen_t peer_len;
	uint8_t *rbuf;
	size_t rlen;
	uint8_t *wbuf;
	size_t wlen, wcap;
	listener_handler handler;
	void *handler_arg;
	ev_idle resume;       /**< never started: fed to resume reading from the loop */
	unsigned pending;     /**< queries waiting for upstream */
	unsigned refs;        /**< pending + 1 while the socket is open */
	bool eof;             /**< the client finished sending */
};

static struct tcp_conn conns = { .prev = &conns, .next = &conns };

static bool addr_is_wildcard(const struct cfg_addr *a)
{
	static const struct in6_addr any6 = IN6ADDR_ANY_INIT;

	if (a->ss.ss_family == AF_INET)
		return ((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr == htonl(INADDR_ANY);
	return memcmp(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr, &any6, sizeof(any6)) == 0;
}

/* ---- sockets passed by socket activation ---- */

#define INHERITED_MAX 64

static struct inherited {
	int fd;
	int type;
	struct cfg_addr addr;
} inherited[INHERITED_MAX];
static size_t n_inherited;

size_t listener_inherit(void)
{
	int fds[INHERITED_MAX];
	int n = notify_listen_fds(fds, INHERITED_MAX);

	for (int i = 0; i < n; i++) {
		struct inherited *h = &inherited[n_inherited];
		socklen_t tl = sizeof(h->type);
		char name[64];
		h->fd = fds[i];
		h->addr.len = sizeof(h->addr.ss);
		if (getsockopt(h->fd, SOL_SOCKET, SO_TYPE, &h->type, &tl) < 0 ||
		    getsockname(h->fd, (struct sockaddr *)&h->addr.ss, &h->addr.len) < 0 ||
		    (h->addr.ss.ss_family != AF_INET && h->addr.ss.ss_family != AF_INET6) ||
		    (h->type != SOCK_DGRAM && h->type != SOCK_STREAM)) {
			log_warn("socket activation: descriptor %d is not a UDP or TCP socket; closed", h->fd);
			close(h->fd);
			continue;
		}
		fcntl(h->fd, F_SETFD, FD_CLOEXEC);
		fcntl(h->fd, F_SETFL, fcntl(h->fd, F_GETFL) | O_NONBLOCK);
		address_str((const struct sockaddr *)&h->addr.ss, name, sizeof(name));
		log_info("socket activation: %s (%s) passed by the service manager", name,
			 h->type == SOCK_DGRAM ? "udp" : "tcp");
		n_inherited++;
	}
	return n_inherited;
}

/** @return a passed socket of this type on exactly this address, once; or -1. */
static int take_inherited(const struct cfg_addr *a, int type)
{
	for (size_t i = 0; i < n_inherited; i++) {
		if (inherited[i].type == type && address_equal(&inherited[i].addr, a)) {
			int fd = inherited[i].fd;
			inherited[i] = inherited[--n_inherited];
			return fd;
		}
	}
	return -1;
}

static void udp_cb(struct ev_loop *loop, ev_io *w, int revents);
static void accept_cb(struct ev_loop *loop, ev_io *w, int revents);
static void set_options(int fd, const struct cfg_addr *a, int type, bool wildcard);

struct listener *listener_adopt_inherited(struct server *srv, listener_handler handler, void *arg)
{
	struct listener *list = NULL;

	while (n_inherited) {
		struct listener *l = calloc(1, sizeof(*l));
		if (!l) {
			log_err("socket activation: out of memory");
			break;
		}
		struct cfg_addr addr = inherited[0].addr;
		l->srv = srv;
		l->addr = addr;
		l->handler = handler;
		l->handler_arg = arg;
		l->inherited = true;
		l->wildcard = addr_is_wildcard(&addr);
		l->udp_fd = take_inherited(&addr, SOCK_DGRAM);
		l->tcp_fd = take_inherited(&addr, SOCK_STREAM);
		if (l->udp_fd >= 0)
			set_options(l->udp_fd, &addr, SOCK_DGRAM, l->wildcard);
		ev_io_init(&l->udp_io, udp_cb, l->udp_fd, EV_READ);
		ev_io_init(&l->tcp_io, accept_cb, l->tcp_fd, EV_READ);
		l->udp_io.data = l->tcp_io.data = l;
		l->next = list;
		list = l;
	}
	return list;
}

static void set_options(int fd, const struct cfg_addr *a, int type, bool wildcard)
{
	int one = 1;

	if (type == SOCK_DGRAM) {
		/* Bursts of queries must not overflow the default ~200 KiB
		 * buffers; root may exceed rmem_max/wmem_max, others get what
		 * the kernel allows. */
		int size = 4 * 1024 * 1024;
		if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0)
			setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
		if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)) < 0)
			setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
	}
	if (type == SOCK_DGRAM && wildcard) {
		if (a->ss.ss_family == AF_INET)
			setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one));
		else
			setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one));
	}
}

static bool reuseport;

void listener_set_reuseport(bool on)
{
	reuseport = on;
}

/** @param passed set when the socket came from socket activation (may be NULL) */
static int open_socket(const struct cfg_addr *a, int type, bool wildcard, bool *passed)
{
	int fd = take_inherited(a, type);
	int one = 1;

	if (passed)
		*passed = fd >= 0;
	if (fd >= 0) {
		set_options(fd, a, type, wildcard);
		return fd;
	}
	fd = socket(a->ss.ss_family, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (type == SOCK_DGRAM && reuseport)
		setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (a->ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	/* Bind to an address that is not up yet (a bridge created later at
	 * boot): the socket serves once it appears, as unbound's ip-freebind. */
	if (a->ss.ss_family == AF_INET)
		setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof(one));
	else
		setsockopt(fd, IPPROTO_IPV6, IPV6_FREEBIND, &one, sizeof(one));
	set_options(fd, a, type, wildcard);
	if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0 ||
	    (type == SOCK_STREAM && listen(fd, 128) < 0)) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/** The reason a bind failed, with what to do about a privileged port. */
static void bind_error(const struct cfg_addr *addr, const char *name, const char *proto)
{
	int e = errno;
	uint16_t port = ntohs(addr->ss.ss_family == AF_INET
			      ? ((const struct sockaddr_in *)&addr->ss)->sin_port
			      : ((const struct sockaddr_in6 *)&addr->ss)->sin6_port);

	if (e == EACCES && port < 1024 && geteuid() != 0)
		log_err("listen %s (%s): %s: ports below 1024 need CAP_NET_BIND_SERVICE, which this "
			"process (uid %u) does not have; restart acrdnsd to listen there",
			name, proto, strerror(e), (unsigned)geteuid());
	else
		log_err("listen %s (%s): %s", name, proto, strerror(e));
	errno = e; /* for the caller's reply to a reload */
}

/** Is addr one of this host's addresses now?  (Not a wildcard.) */
static bool addr_present(const struct cfg_addr *addr)
{
	struct ifaddrs *ifs, *i;
	bool found = false;

	if (getifaddrs(&ifs) < 0)
		return true; /* cannot tell: say nothing */
	for (i = ifs; i && !found; i = i->ifa_next) {
		if (!i->ifa_addr || i->ifa_addr->sa_family != addr->ss.ss_family)
			continue;
		if (addr->ss.ss_family == AF_INET)
			found = ((const struct sockaddr_in *)(const void *)i->ifa_addr)->sin_addr.s_addr ==
				((const struct sockaddr_in *)(const void *)&addr->ss)->sin_addr.s_addr;
		else
			found = IN6_ARE_ADDR_EQUAL(
				&((const struct sockaddr_in6 *)(const void *)i->ifa_addr)->sin6_addr,
				&((const struct sockaddr_in6 *)(const void *)&addr->ss)->sin6_addr);
	}
	freeifaddrs(ifs);
	return found;
}

/** UDP and, unless for a worker, TCP on addr. */
static struct listener *open_listener(struct server *srv, const struct cfg_addr *addr, bool worker,
				      listener_handler handler, void *arg)
{
	struct listener *l = calloc(1, sizeof(*l));
	char name[64];

	address_str((const struct sockaddr *)&addr->ss, name, sizeof(name));
	if (!l) {
		log_err("listen %s: out of memory", name);
		return NULL;
	}
	l->srv = srv;
	l->addr = *addr;
	l->worker = worker;
	l->handler = handler;
	l->handler_arg = arg;
	l->wildcard = addr_is_wildcard(addr);
	l->tcp_fd = -1;
	l->udp_fd = open_socket(addr, SOCK_DGRAM, l->wildcard, &l->udp_passed);
	if (l->udp_fd < 0) {
		bind_error(addr, name, worker ? "udp, worker" : "udp");
		free(l);
		return NULL;
	}
	if (!worker && (l->tcp_fd = open_socket(addr, SOCK_STREAM, l->wildcard, NULL)) < 0) {
		bind_error(addr, name, "tcp");
		int e = errno;
		close(l->udp_fd);
		free(l);
		errno = e;
		return NULL;
	}
	if (!worker && !l->wildcard && !l->udp_passed && !addr_present(addr))
		log_warn("listen %s: the address is not on any interface yet; listening anyway "
			 "(IP_FREEBIND): queries are served once it is added", name);
	ev_io_init(&l->udp_io, udp_cb, l->udp_fd, EV_READ);
	ev_io_init(&l->tcp_io, accept_cb, l->tcp_fd, EV_READ);
	l->udp_io.data = l->tcp_io.data = l;
	return l;
}

struct listener *listener_open(struct server *srv, const struct cfg_addr *addr,
			       listener_handler handler, void *arg)
{
	return open_listener(srv, addr, false, handler, arg);
}

struct listener *listener_open_worker(struct server *shadow, const struct cfg_addr *addr,
				      listener_handler handler, void *arg)
{
	return open_listener(shadow, addr, true, handler, arg);
}

void listener_start(struct listener *l)
{
	char name[64];

	if (l->udp_fd >= 0)
		ev_io_start(l->srv->loop, &l->udp_io);
	if (l->tcp_fd >= 0)
		ev_io_start(l->srv->loop, &l->tcp_io);
	address_str((const struct sockaddr *)&l->addr.ss, name, sizeof(name));
	if (l->worker)
		return;
	log_info("listening on %s (%s%s%s)%s", name, l->udp_fd >= 0 ? "udp" : "",
		 l->udp_fd >= 0 && l->tcp_fd >= 0 ? ", " : "", l->tcp_fd >= 0 ? "tcp" : "",
		 l->inherited ? " from socket activation" : "");
}

static void tx_flush_for(const struct listener *l);

void listener_close(struct listener *l)
{
	tx_flush_for(l);
	ev_io_stop(l->srv->loop, &l->udp_io);
	ev_io_stop(l->srv->loop, &l->tcp_io);
	if (l->udp_fd >= 0)
		close(l->udp_fd);
	if (l->tcp_fd >= 0)
		close(l->tcp_fd);
	l->udp_fd = l->tcp_fd = -1;
	l->closed = true;
	if (l->held == 0)
		free(l);
}

/*
 * UDP moves in batches: one recvmmsg() takes up to UDP_BATCH queries, the
 * replies that can be given at once are gathered, and one sendmmsg() sends
 * them.  A wake-up with one query costs one receive and one send, with no
 * extra receive to find the socket empty.  On the main loop, the answers
 * that upstream replies complete, one callback each, are gathered too and
 * sent just before the loop waits again (listener_batch_start).
 */
#define UDP_QBUF 4096   /* queries are small; a longer one is read cut and fails to parse */

union pktinfo_ctl {
	char buf[CMSG_SPACE(sizeof(struct in6_pktinfo))];
	struct cmsghdr align;
};

/* One of each per thread: worker threads batch on their own. */
static _Thread_local struct {
	struct mmsghdr msgs[UDP_BATCH];
	struct iovec iov[UDP_BATCH];
	struct sockaddr_storage peer[UDP_BATCH];
	union pktinfo_ctl ctl[UDP_BATCH];
	uint8_t buf[UDP_BATCH][UDP_QBUF];
} rx;

static _Thread_local struct {
	struct listener *l;   /**< the listener of the replies gathered, or NULL */
	bool in_rx;           /**< in a receive batch, which sends what it gathered at its end */
	bool defer;           /**< the main loop: gathers outside receive batches too */
	unsigned n;
	struct mmsghdr msgs[UDP_BATCH];
	struct iovec iov[UDP_BATCH];
	struct sockaddr_storage peer[UDP_BATCH];
	union pktinfo_ctl ctl[UDP_BATCH];
	uint8_t buf[UDP_BATCH][WIRE_EDNS_SIZE];  /* no UDP reply is longer */
} tx;

/** Fill msg for a reply to rt: peer, and our address for wildcard binds. */
static void reply_msghdr(const struct reply_to *rt, struct msghdr *mh, struct sockaddr_storage *peer,
			 union pktinfo_ctl *ctl)
{
	memcpy(peer, &rt->peer, rt->peer_len);
	mh->msg_name = peer;
	mh->msg_namelen = rt->peer_len;
	mh->msg_control = NULL;
	mh->msg_controllen = 0;
	mh->msg_flags = 0;
	if (!rt->has_local)
		return;
	struct cmsghdr *c = (struct cmsghdr *)(void *)ctl->buf;
	memset(ctl, 0, sizeof(*ctl));
	mh->msg_control = ctl->buf;
	if (rt->peer.ss_family == AF_INET) {
		mh->msg_controllen = CMSG_SPACE(sizeof(struct in_pktinfo));
		c->cmsg_level = IPPROTO_IP;
		c->cmsg_type = IP_PKTINFO;
		c->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
		memcpy(CMSG_DATA(c), &rt->local.v4, sizeof(rt->local.v4));
	} else {
		mh->msg_controllen = CMSG_SPACE(sizeof(struct in6_pktinfo));
		c->cmsg_level = IPPROTO_IPV6;
		c->cmsg_type = IPV6_PKTINFO;
		c->cmsg_len = CMSG_LEN(sizeof(struct in6_pktinfo));
		memcpy(CMSG_DATA(c), &rt->local.v6, sizeof(rt->local.v6));
	}
}

static ev_prepare tx_prepare;   /* the main loop's; started only while answers wait */
static struct ev_loop *tx_loop;

static void tx_flush(void)
{
	struct listener *l = tx.l;
	unsigned sent = 0;

	while (sent < tx.n) {
		int n = sendmmsg(l->udp_fd, tx.msgs + sent, tx.n - sent, MSG_DONTWAIT);
		if (n <= 0) {
			/* A full socket buffer loses what is left, as a lost datagram would. */
			STAT_ADD_SHARED(l->srv->stats.send_errors, tx.n - sent);
			break;
		}
		sent += (unsigned)n;
	}
	tx.n = 0;
	tx.l = NULL;
}

/** Send what is gathered for l, before l goes. */
static void tx_flush_for(const struct listener *l)
{
	if (tx.l == l)
		tx_flush();
}

static void tx_prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	(void)revents;
	tx_flush();
	ev_prepare_stop(loop, w);
}

void listener_batch_start(struct ev_loop *loop)
{
	ev_prepare_init(&tx_prepare, tx_prepare_cb);
	tx_loop = loop;
	tx.defer = true;
}

void listener_flush(void)
{
	tx_flush();
	if (tx_loop)
		ev_prepare_stop(tx_loop, &tx_prepare);
}

void listener_batch_stop(struct ev_loop *loop)
{
	tx_flush();
	ev_prepare_stop(loop, &tx_prepare);
	tx_loop = NULL;
	tx.defer = false;
}

/** Point the receive batch's headers at its buffers, for l's kind of socket. */
static void rx_prepare(const struct listener *l)
{
	/* The kernel rewrites only name and control lengths and flags. */
	for (int i = 0; i < UDP_BATCH; i++) {
		struct msghdr *mh = &rx.msgs[i].msg_hdr;
		if (mh->msg_iov && mh->msg_namelen == sizeof(rx.peer[i]) &&
		    mh->msg_control == (l->wildcard ? rx.ctl[i].buf : NULL) &&
		    mh->msg_controllen == (l->wildcard ? sizeof(rx.ctl[i].buf) : 0))
			break; /* this one and the rest are still set up */
		rx.iov[i].iov_base = rx.buf[i];
		rx.iov[i].iov_len = UDP_QBUF;
		mh->msg_name = &rx.peer[i];
		mh->msg_namelen = sizeof(rx.peer[i]);
		mh->msg_iov = &rx.iov[i];
		mh->msg_iovlen = 1;
		mh->msg_control = l->wildcard ? rx.ctl[i].buf : NULL;
		mh->msg_controllen = l->wildcard ? sizeof(rx.ctl[i].buf) : 0;
	}
}

/** How to answer the i-th datagram received: its peer, and our address for wildcard binds. */
static void rx_reply_to(struct listener *l, int i, struct reply_to *rt)
{
	struct msghdr *mh = &rx.msgs[i].msg_hdr;

	memset(rt, 0, sizeof(*rt));
	rt->udp = l;
	memcpy(&rt->peer, &rx.peer[i], mh->msg_namelen);
	rt->peer_len = mh->msg_namelen;
	for (struct cmsghdr *c = l->wildcard ? CMSG_FIRSTHDR(mh) : NULL; c; c = CMSG_NXTHDR(mh, c)) {
		if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
			memcpy(&rt->local.v4, CMSG_DATA(c), sizeof(rt->local.v4));
			rt->local.v4.ipi_spec_dst = rt->local.v4.ipi_addr;
			rt->local.v4.ipi_ifindex = 0;
			rt->has_local = true;
		} else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
			memcpy(&rt->local.v6, CMSG_DATA(c), sizeof(rt->local.v6));
			rt->has_local = true;
		}
	}
}

static void udp_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct listener *l = w->data;
	(void)loop;
	(void)revents;

	for (int round = 0; round < 4; round++) {
		rx_prepare(l);
		int n = recvmmsg(l->udp_fd, rx.msgs, UDP_BATCH, MSG_DONTWAIT, NULL);
		if (n <= 0)
			return; /* EAGAIN, or an ICMP error reported on the socket */
		tx.in_rx = true;
		for (int i = 0; i < n; i++) {
			struct reply_to rt;
			rx_reply_to(l, i, &rt);
			l->handler(l->handler_arg, rx.buf[i], rx.msgs[i].msg_len, &rt);
		}
		tx_flush();
		tx.in_rx = false;
		if (n < UDP_BATCH)
			return;
	}
}

static void udp_send(const struct reply_to *rt, const uint8_t *msg, size_t len)
{
	if (rt->udp->udp_fd < 0)
		return; /* its listener was closed by a reload meanwhile */
	if ((tx.in_rx || tx.defer) && len <= sizeof(tx.buf[0])) {
		if (tx.l != rt->udp || tx.n == UDP_BATCH)
			tx_flush();
		tx.l = rt->udp;
		unsigned i = tx.n++;
		memcpy(tx.buf[i], msg, len);
		tx.iov[i].iov_base = tx.buf[i];
		tx.iov[i].iov_len = len;
		reply_msghdr(rt, &tx.msgs[i].msg_hdr, &tx.peer[i], &tx.ctl[i]);
		tx.msgs[i].msg_hdr.msg_iov = &tx.iov[i];
		tx.msgs[i].msg_hdr.msg_iovlen = 1;
		if (!tx.in_rx && !ev_is_active(&tx_prepare))
			ev_prepare_start(tx_loop, &tx_prepare);
		return;
	}
	/* An answer that upstream completed, on a loop that does not defer. */
	struct sockaddr_storage peer;
	union pktinfo_ctl ctl;
	struct iovec iov = { (void *)msg, len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	reply_msghdr(rt, &mh, &peer, &ctl);
	if (sendmsg(rt->udp->udp_fd, &mh, MSG_DONTWAIT) < 0)
		STAT_ADD_SHARED(rt->udp->srv->stats.send_errors, 1);
}

/* ---- TCP ---- */

static void conn_free(struct tcp_conn *c)
{
	free(c->rbuf);
	free(c->wbuf);
	free(c);
}

static void conn_close(struct tcp_conn *c)
{
	if (c->fd < 0)
		return;
	ev_io_stop(c->srv->loop, &c->rio);
	ev_io_stop(c->srv->loop, &c->wio);
	ev_timer_stop(c->srv->loop, &c->idle);
	ev_idle_stop(c->srv->loop, &c->resume);   /* drops a resume fed but not yet run */
	close(c->fd);
	c->fd = -1;
	c->prev->next = c->next;
	c->next->prev = c->prev;
	c->srv->tcp_conns--;
	if (--c->refs == 0)
		conn_free(c);
}

/** Close when the client is done and nothing is left to answer or send. */
static void conn_maybe_finish(struct tcp_conn *c)
{
	if (c->fd >= 0 && c->eof && c->pending == 0 && c->wlen == 0)
		conn_close(c);
}

static void conn_flush(struct tcp_conn *c)
{
	while (c->wlen > 0) {
		ssize_t n = write(c->fd, c->wbuf, c->wlen);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				ev_io_start(c->srv->loop, &c->wio);
				return;
			}
			if (errno == EINTR)
				continue;
			conn_close(c);
			return;
		}
		memmove(c->wbuf, c->wbuf + n, c->wlen - (size_t)n);
		c->wlen -= (size_t)n;
		c->last_progress = ev_now(c->srv->loop);
	}
	ev_io_stop(c->srv->loop, &c->wio);
	conn_maybe_finish(c);
}

static void tcp_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	conn_flush(w->data);
}

static void conn_read_messages(struct tcp_conn *c)
{
	size_t off = 0;

	while (c->fd >= 0 && c->pending < TCP_MAX_PENDING && c->rlen - off >= 2) {
		size_t mlen = wire_get16(c->rbuf + off);
		if (c->rlen - off < 2 + mlen)
			break;
		struct reply_to rt = { .tcp = c, .peer = c->peer, .peer_len = c->peer_len };
		c->last_progress = ev_now(c->srv->loop);
		/* The message is handled in place; the handler copies what it keeps. */
		c->handler(c->handler_arg, c->rbuf + off + 2, mlen, &rt);
		off += 2 + mlen;
	}
	if (c->fd < 0)
		return;
	if (off) {
		memmove(c->rbuf, c->rbuf + off, c->rlen - off);
		c->rlen -= off;
	}
	/* Too many answers owed: stop reading until some are delivered. */
	if (c->pending >= TCP_MAX_PENDING)
		ev_io_stop(c->srv->loop, &c->rio);
}

static void tcp_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct tcp_conn *c = w->data;
	(void)loop;
	(void)revents;

	if (c->rlen == TCP_RBUF) {
		/* Full, and only because queries wait for answers. */
		ev_io_stop(c->srv->loop, &c->rio);
		return;
	}
	ssize_t n = read(c->fd, c->rbuf + c->rlen, TCP_RBUF - c->rlen);
	if (n < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			conn_close(c);
		return;
	}
	if (n == 0) {
		/* Answers still owed are sent before the connection goes. */
		c->eof = true;
		ev_io_stop(c->srv->loop, &c->rio);
		conn_maybe_finish(c);
		return;
	}
	c->rlen += (size_t)n;
	c->refs++; /* the connection may close while its messages are handled */
	conn_read_messages(c);
	if (--c->refs == 0)
		conn_free(c);
}

/**
 * Read again on a connection that was paused at TCP_MAX_PENDING, now that
 * answers went out.  Runs from the loop (fed by listener_release), so no
 * query is handled while another one's answer is being given.
 */
static void tcp_resume_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
	struct tcp_conn *c = w->data;
	(void)revents;

	if (c->fd < 0 || c->eof || c->pending >= TCP_MAX_PENDING)
		return;
	ev_io_start(loop, &c->rio);
	c->refs++; /* the connection may close while its messages are handled */
	conn_read_messages(c);
	if (--c->refs == 0)
		conn_free(c);
}

static void tcp_idle_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct tcp_conn *c = w->data;
	ev_tstamp after = c->last_progress + c->idle_timeout - ev_now(loop);
	(void)revents;

	/* Only a connection whose queries all wait for upstream, with nothing
	 * half-read or unsent, outlives its timeout (upstream's deadline ends that). */
	if (after <= 0 && (c->pending == 0 || c->wlen > 0 || c->rlen > 0)) {
		conn_close(c);
		return;
	}
	w->repeat = after > 0.1 ? after : c->idle_timeout;
	ev_timer_again(loop, w);
}

/** Same client address (the port does not matter). */
static bool peer_equal(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
		       ((const struct sockaddr_in *)b)->sin_addr.s_addr;
	return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
		      &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr)) == 0;
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct listener *l = w->data;
	(void)revents;

	for (int i = 0; i < 16; i++) {
		struct sockaddr_storage peer;
		socklen_t plen = sizeof(peer);
		int fd = accept4(l->tcp_fd, (struct sockaddr *)&peer, &plen,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		const struct config *cfg = l->srv->cfg;
		unsigned same = 0;
		for (struct tcp_conn *o = conns.next; o != &conns; o = o->next)
			same += peer_equal(&o->peer, &peer);
		if (l->srv->tcp_conns >= cfg->tcp_max_connections || same >= cfg->tcp_max_per_client) {
			STAT_INC(l->srv->stats.tcp_refused);
			close(fd);
			continue;
		}
		struct tcp_conn *c = calloc(1, sizeof(*c));
		if (!c || !(c->rbuf = malloc(TCP_RBUF))) {
			free(c);
			close(fd);
			continue;
		}
		c->srv = l->srv;
		c->handler = l->handler;
		c->handler_arg = l->handler_arg;
		c->fd = fd;
		c->peer = peer;
		c->peer_len = plen;
		c->refs = 1;
		c->last_progress = ev_now(loop);
		c->idle_timeout = cfg->tcp_idle_timeout;
		ev_io_init(&c->rio, tcp_read_cb, fd, EV_READ);
		ev_io_init(&c->wio, tcp_write_cb, fd, EV_WRITE);
		ev_timer_init(&c->idle, tcp_idle_cb, c->idle_timeout, c->idle_timeout);
		ev_idle_init(&c->resume, tcp_resume_cb);
		c->rio.data = c->wio.data = c->idle.data = c->resume.data = c;
		ev_io_start(loop, &c->rio);
		ev_timer_start(loop, &c->idle);
		c->next = conns.next;
		c->prev = &conns;
		conns.next->prev = c;
		conns.next = c;
		l->srv->tcp_conns++;
	}
}

static void tcp_send(struct tcp_conn *c, const uint8_t *msg, size_t len)
{
	if (c->fd < 0)
		return;
	if (c->wlen + len + 2 > TCP_WBUF_MAX) {
		/* The client does not read its answers: it is not a client. */
		conn_close(c);
		return;
	}
	if (c->wlen + len + 2 > c->wcap) {
		size_t cap = c->wcap ? c->wcap : 4096;
		while (cap < c->wlen + len + 2)
			cap *= 2;
		uint8_t *b = realloc(c->wbuf, cap);
		if (!b) {
			STAT_ADD_SHARED(c->srv->stats.send_errors, 1);
			return;
		}
		c->wbuf = b;
		c->wcap = cap;
	}
	wire_put16(c->wbuf + c->wlen, (uint16_t)len);
	memcpy(c->wbuf + c->wlen + 2, msg, len);
	c->wlen += len + 2;
	conn_flush(c);
}

void listener_reply(const struct reply_to *rt, const uint8_t *msg, size_t len)
{
	if (rt->tcp)
		tcp_send(rt->tcp, msg, len);
	else if (rt->udp)
		udp_send(rt, msg, len);
	/* neither: a prefetch, answered into the cache only */
}

size_t listener_max_reply(const struct reply_to *rt, const struct wire_query *q)
{
	if (rt->tcp || !rt->udp)
		return 65535;
	if (!q->edns)
		return WIRE_UDP_PLAIN;
	/* Never more than we advertise: larger datagrams fragment. */
	return q->edns_size < WIRE_EDNS_SIZE ? q->edns_size : WIRE_EDNS_SIZE;
}

void listener_hold(struct reply_to *rt)
{
	if (rt->udp)
		rt->udp->held++;
	if (rt->tcp) {
		rt->tcp->pending++;
		rt->tcp->refs++;
	}
}

void listener_release(struct reply_to *rt)
{
	struct tcp_conn *c = rt->tcp;

	if (rt->udp && --rt->udp->held == 0 && rt->udp->closed) {
		free(rt->udp);
		rt->udp = NULL;
	}
	if (!c)
		return;
	c->pending--;
	if (--c->refs == 0) {
		conn_free(c);
		return;
	}
	if (c->fd < 0)
		return;
	if (!c->eof && c->pending < TCP_MAX_PENDING && !ev_is_active(&c->rio))
		ev_feed_event(c->srv->loop, &c->resume, EV_CUSTOM);
	conn_maybe_finish(c);
}

void listener_close_all_tcp(struct server *srv)
{
	(void)srv;
	while (conns.next != &conns)
		conn_close(conns.next);
}
