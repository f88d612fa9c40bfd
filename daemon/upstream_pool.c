/**
 * \file upstream_pool.c
 * The upstream socket pool.  A socket on loan calls its borrower when it
 * can be read; an idle one reads and drops what arrives (a late reply to
 * an earlier question) and closes on an error (ICMP).
 */
#include "autoconf.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "random.h"
#include "upstream_pool.h"

struct upstream_pool {
	struct upstream_pool *next, *prev;   /**< in all->list */
	struct upstream_pools *all;
	struct upstream_sock *idle, *idle_tail;
	size_t n_idle;
	size_t lent;                         /**< sockets on loan */
	bool orphan;                         /**< its server is gone: freed when nothing is lent */
};

static void sock_close(struct upstream_sock *us)
{
	us->all->n_sockets--;
	ev_io_stop(us->all->loop, &us->io);
	close(us->fd);
	free(us);
}

static void idle_unlink(struct upstream_pool *p, struct upstream_sock *us)
{
	if (us->prev)
		us->prev->next = us->next;
	else
		p->idle = us->next;
	if (us->next)
		us->next->prev = us->prev;
	else
		p->idle_tail = us->prev;
	us->prev = us->next = NULL;
	p->n_idle--;
}

/** Has the socket carried its last question? */
static bool spent(const struct upstream_sock *us, ev_tstamp now)
{
	return us->uses >= UPSTREAM_POOL_USES || now - us->born >= UPSTREAM_POOL_AGE;
}

static void pool_unlink(struct upstream_pool *p)
{
	if (p->prev)
		p->prev->next = p->next;
	else
		p->all->list = p->next;
	if (p->next)
		p->next->prev = p->prev;
	free(p);
}

/** Close the sockets idle too long; stop when none is left. */
static void sweep_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct upstream_pools *all = w->data;
	ev_tstamp now = ev_now(loop);
	bool any = false;
	(void)revents;

	for (struct upstream_pool *p = all->list; p; p = p->next) {
		struct upstream_sock *us;
		while ((us = p->idle_tail) &&
		       (now - us->idle_since >= UPSTREAM_POOL_IDLE || spent(us, now))) {
			idle_unlink(p, us);
			sock_close(us);
		}
		any |= p->idle != NULL;
	}
	if (!any)
		ev_timer_stop(loop, w);
}

void upstream_pools_init(struct upstream_pools *all, struct ev_loop *loop)
{
	memset(all, 0, sizeof(*all));
	all->loop = loop;
	ev_init(&all->sweep, sweep_cb);
	all->sweep.repeat = 1.0;
	all->sweep.data = all;
}

void upstream_pools_closing(struct upstream_pools *all)
{
	all->closing = true;
	ev_timer_stop(all->loop, &all->sweep);
}

struct upstream_pool *upstream_pool_new(struct upstream_pools *all)
{
	struct upstream_pool *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->all = all;
	p->next = all->list;
	if (all->list)
		all->list->prev = p;
	all->list = p;
	return p;
}

void upstream_pool_free(struct upstream_pool *p)
{
	if (!p)
		return;
	while (p->idle) {
		struct upstream_sock *us = p->idle;
		idle_unlink(p, us);
		sock_close(us);
	}
	p->orphan = true;
	if (p->lent == 0)
		pool_unlink(p);
}

size_t upstream_pool_idle(const struct upstream_pool *p)
{
	return p ? p->n_idle : 0;
}

static void sock_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct upstream_sock *us = w->data;
	uint8_t buf[512];
	(void)loop;
	(void)revents;

	if (us->owner) {
		us->readable(us->owner);
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
	idle_unlink(us->pool, us);
	sock_close(us);
}

static void bind_random_port(int fd, int family)
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
			return;
	}
	/* connect() binds an ephemeral port, also random on Linux */
}

/** Lend us to owner. */
static struct upstream_sock *lend(struct upstream_sock *us, void (*readable)(void *owner), void *owner)
{
	us->owner = owner;
	us->readable = readable;
	if (us->pool)
		us->pool->lent++;
	return us;
}

struct upstream_sock *upstream_pool_get(struct upstream_pools *all, struct upstream_pool *pool,
					const struct cfg_addr *addr, void (*readable)(void *owner),
					void *owner, bool *hard)
{
	ev_tstamp now = ev_now(all->loop);
	struct upstream_sock *us;
	int fd;

	*hard = false;
	while (pool && (us = pool->idle)) {
		idle_unlink(pool, us);
		if (!spent(us, now))
			return lend(us, readable, owner);
		sock_close(us);
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
	us->all = all;
	us->pool = pool;
	us->addr = *addr;
	us->born = now;
	all->n_sockets++;
	ev_io_init(&us->io, sock_cb, fd, EV_READ);
	us->io.data = us;
	ev_io_start(all->loop, &us->io);
	return lend(us, readable, owner);
}

void upstream_pool_put(struct upstream_sock *us, uint16_t id, bool healthy)
{
	struct upstream_pools *all = us->all;
	struct upstream_pool *p = us->pool;
	ev_tstamp now = ev_now(all->loop);

	us->owner = NULL;
	us->last_id = id;
	if (p && --p->lent == 0 && p->orphan) {
		pool_unlink(p);
		p = us->pool = NULL;
	}
	if (!healthy || !p || p->orphan || all->closing || spent(us, now) ||
	    p->n_idle >= UPSTREAM_POOL_IDLE_MAX) {
		sock_close(us);
		return;
	}
	us->idle_since = now;
	us->prev = NULL;
	us->next = p->idle;
	if (p->idle)
		p->idle->prev = us;
	else
		p->idle_tail = us;
	p->idle = us;
	p->n_idle++;
	if (!ev_is_active(&all->sweep))
		ev_timer_again(all->loop, &all->sweep);
}
