/**
 * \file nft.c
 * nftables set updates through libnftables, the library behind nft(8).
 * The query path only parses the answer and queues addresses it has not
 * queued recently (a small hash remembers each address' expiry).  An
 * answer with an address new to its set is held, and the queue committed
 * just before the loop next waits, so everything learned in one pass of
 * the loop costs one transaction and the held answers go out right after
 * it (nft tells their owner, which sends them).  Refreshes of addresses
 * already in a set wait for a timer instead.
 * A failure (no table, no permission) is counted and logged, and the DNS
 * answers go out regardless.
 */
#include "autoconf.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#ifdef HAVE_NFTABLES
#include <nftables/libnftables.h>
#endif

#include "hash.h"
#include "log.h"
#include "nft.h"
#include "server.h"
#include "wire.h"

#define CHAIN_MAX 16           /* names followed along a CNAME chain */
#define SEEN_SLOTS 16384       /* power of two */
#define SEEN_FULL (SEEN_SLOTS * 3 / 4)
#define ERROR_LOG_EVERY 60.0   /* seconds between repeated error messages */

uint32_t nft_timeout(uint32_t ttl, uint32_t grace)
{
	/* A week at most: TTLs past that are not meant, and the sum must not wrap. */
	if (ttl > 604800)
		ttl = 604800;
	return ttl + grace ? ttl + grace : 1;
}

static size_t list_text(const struct cfg_nft *cfg, const char *verb, const char *set, int family,
			bool timeouts, const struct nft_item *items, size_t n, char *buf, size_t len)
{
	size_t w = 0, k = 0;
	int r;

	for (size_t i = 0; i < n; i++) {
		char a[INET6_ADDRSTRLEN];
		if (items[i].family != family)
			continue;
		inet_ntop(family == 4 ? AF_INET : AF_INET6, items[i].addr, a, sizeof(a));
		if (k++ == 0) {
			r = snprintf(buf + w, len - w, "%s element %s %s %s { ", verb, cfg->family,
				     cfg->table, set);
			if (r < 0 || (size_t)r >= len - w)
				return (size_t)-1;
			w += (size_t)r;
		}
		r = timeouts ? snprintf(buf + w, len - w, "%s%s timeout %" PRIu32 "s", k > 1 ? ", " : "", a,
					items[i].timeout)
			     : snprintf(buf + w, len - w, "%s%s", k > 1 ? ", " : "", a);
		if (r < 0 || (size_t)r >= len - w)
			return (size_t)-1;
		w += (size_t)r;
	}
	if (k) {
		r = snprintf(buf + w, len - w, " }\n");
		if (r < 0 || (size_t)r >= len - w)
			return (size_t)-1;
		w += (size_t)r;
	}
	return w;
}

size_t nft_batch_text(const struct cfg_nft *cfg, const struct nft_item *items, size_t n,
		      char *buf, size_t buflen)
{
	size_t w = 0;

	for (int family = 4; family <= 6; family += 2) {
		const char *set = family == 4 ? cfg->set4 : cfg->set6;
		if (!set[0])
			continue;
		static const struct { const char *verb; bool timeouts; } steps[] = {
			{ "add", true }, { "delete", false }, { "add", true },
		};
		for (size_t i = 0; i < 3; i++) {
			size_t r = list_text(cfg, steps[i].verb, set, family, steps[i].timeouts, items, n,
					     buf + w, buflen - w);
			if (r == (size_t)-1)
				return 0;
			w += r;
		}
	}
	if (w < buflen)
		buf[w] = '\0';
	return w;
}

void nft_print_ruleset(FILE *f, const struct cfg_nft *c)
{
	bool v4 = c->set4[0], v6 = c->set6[0];

	fprintf(f,
		"#!/usr/sbin/nft -f\n"
		"# Egress for acrdns: outgoing HTTPS only to addresses that acrdnsd gave out\n"
		"# for allowed names.  acrdnsd adds each address with a timeout of its TTL\n"
		"# plus %" PRIu32 " s.  Adapt before use: other ports, other hosts, logging.\n"
		"# Load with: nft -f FILE (this replaces the table and empties its sets).\n"
		"\n"
		"table %s %s\n"
		"delete table %s %s\n"
		"\n"
		"table %s %s {\n",
		c->grace, c->family, c->table, c->family, c->table, c->family, c->table);
	if (v4)
		fprintf(f, "\tset %s {\n\t\ttype ipv4_addr\n\t\tflags timeout\n\t}\n\n", c->set4);
	if (v6)
		fprintf(f, "\tset %s {\n\t\ttype ipv6_addr\n\t\tflags timeout\n\t}\n\n", c->set6);
	static const char *const chains[][2] = {
		{ "output", "this host's own connections" },
		{ "forward", "containers and machines routed through this host" },
	};
	for (size_t i = 0; i < 2; i++) {
		fprintf(f, "\t# %s\n\tchain %s {\n\t\ttype filter hook %s priority filter; policy accept;\n",
			chains[i][1], chains[i][0], chains[i][0]);
		if (v4)
			fprintf(f, "\t\ttcp dport 443 ip daddr @%s accept\n", c->set4);
		if (v6)
			fprintf(f, "\t\ttcp dport 443 ip6 daddr @%s accept\n", c->set6);
		fprintf(f, "\t\ttcp dport 443 counter drop\n\t}\n%s", i == 0 ? "\n" : "");
	}
	fprintf(f, "}\n");
}

static bool in_chain(uint8_t (*chain)[WIRE_NAME_MAX + 1], const int *lens, int n, const uint8_t *name,
		     int len)
{
	for (int i = 0; i < n; i++)
		if (lens[i] == len && memcmp(chain[i], name, (size_t)len) == 0)
			return true;
	return false;
}

void nft_answer_addresses(const uint8_t *msg, size_t len, nft_addr_cb cb, void *arg)
{
	uint8_t chain[CHAIN_MAX][WIRE_NAME_MAX + 1], owner[WIRE_NAME_MAX + 1];
	int lens[CHAIN_MAX], nchain = 0;
	size_t pos = WIRE_HDR, start;
	struct wire_rr rr;

	if (len < WIRE_HDR || wire_get16(msg + 4) != 1 || WIRE_RCODE(wire_get16(msg + 2)) != 0)
		return;
	unsigned an = wire_get16(msg + 6);
	if ((lens[0] = wire_name_read(msg, len, &pos, chain[0])) < 0)
		return;
	wire_name_lower(chain[0], (size_t)lens[0]);
	nchain = 1;
	pos += 4;
	start = pos;
	/* The chain first, in as many passes as it has links (records may come in any order). */
	for (bool grew = true; grew && nchain < CHAIN_MAX;) {
		grew = false;
		pos = start;
		for (unsigned i = 0; i < an && nchain < CHAIN_MAX; i++) {
			if (wire_rr_next(msg, len, &pos, &rr) < 0)
				return;
			if (rr.type != LDNS_RR_TYPE_CNAME)
				continue;
			size_t p = rr.owner, q = rr.rdata;
			int ol = wire_name_read(msg, len, &p, owner);
			if (ol < 0)
				continue;
			wire_name_lower(owner, (size_t)ol);
			if (!in_chain(chain, lens, nchain, owner, ol))
				continue;
			int tl = wire_name_read(msg, len, &q, chain[nchain]);
			if (tl < 0)
				continue;
			wire_name_lower(chain[nchain], (size_t)tl);
			if (!in_chain(chain, lens, nchain, chain[nchain], tl)) {
				lens[nchain++] = tl;
				grew = true;
			}
		}
	}
	pos = start;
	for (unsigned i = 0; i < an; i++) {
		if (wire_rr_next(msg, len, &pos, &rr) < 0)
			return;
		bool a = rr.type == LDNS_RR_TYPE_A && rr.rdlen == 4;
		bool aaaa = rr.type == LDNS_RR_TYPE_AAAA && rr.rdlen == 16;
		if ((!a && !aaaa) || rr.rclass != LDNS_RR_CLASS_IN)
			continue;
		size_t p = rr.owner;
		int ol = wire_name_read(msg, len, &p, owner);
		if (ol < 0)
			continue;
		wire_name_lower(owner, (size_t)ol);
		if (in_chain(chain, lens, nchain, owner, ol))
			cb(arg, a ? 4 : 6, msg + rr.rdata, rr.ttl);
	}
}

#ifdef HAVE_NFTABLES

struct seen {
	uint8_t family;          /**< 0: empty slot */
	bool fresh;              /**< queued and not in the set before: answers wait for it */
	uint8_t addr[16];
	uint32_t expires;        /**< monotonic seconds */
	uint32_t queued;         /**< queue index + 1 while queued in this batch, else 0 */
};

struct nft {
	struct server *srv;
	struct nft_ctx *ctx;
	struct cfg_nft cfg;
	struct seen *seen;
	size_t n_seen;
	struct nft_item queue[NFT_BATCH];
	size_t n_queue;
	ev_timer flush;
	ev_prepare commit_now;   /**< started while answers are held */
	struct nft_waiter *held, **held_tail;
	size_t n_held;
	struct nft_counters n;
	ev_tstamp last_error_log;
	uint64_t errors_unlogged;
	char *buf;
	size_t buflen;
};

static uint32_t now_s(void)
{
	return (uint32_t)(server_now_ms() / 1000);
}

static void report(struct nft *n, const char *what, const char *detail)
{
	ev_tstamp now = ev_now(n->srv->loop);
	char msg[512];

	snprintf(msg, sizeof(msg), "%s", detail && *detail ? detail : "unknown error");
	msg[strcspn(msg, "\n")] = '\0';
	if (n->last_error_log && now - n->last_error_log < ERROR_LOG_EVERY) {
		n->errors_unlogged++;
		return;
	}
	log_err("nftables: %s: %s (%" PRIu64 " more failures since the last message); "
		"DNS answers are not affected", what, msg, n->errors_unlogged);
	n->last_error_log = now;
	n->errors_unlogged = 0;
}

/** Forget that a failed batch's addresses were added, so they are tried again. */
static void forget(struct nft *n, const struct nft_item *items, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		size_t h = hash_bytes(items[i].addr, 16) & (SEEN_SLOTS - 1);
		for (size_t p = 0; p < SEEN_SLOTS; p++, h = (h + 1) & (SEEN_SLOTS - 1)) {
			struct seen *e = &n->seen[h];
			if (!e->family)
				break;
			if (e->family == items[i].family && memcmp(e->addr, items[i].addr, 16) == 0) {
				e->expires = 0;
				break;
			}
		}
	}
}

/** Tell the owners of the held answers they may go: their addresses are committed (ok) or not. */
static void release(struct nft *n, bool ok)
{
	struct nft_waiter *w = n->held, *next;

	if (!w)
		return;
	ev_prepare_stop(n->srv->loop, &n->commit_now);
	n->held = NULL;
	n->held_tail = &n->held;
	n->n_held = 0;
	for (; w; w = next) {
		next = w->next;
		if (!ok)
			n->n.unconfirmed++;
		w->confirmed = ok;
		w->go(w, next == NULL);
	}
}

static void commit(struct nft *n)
{
	size_t count = n->n_queue;
	bool ok = false;

	ev_timer_stop(n->srv->loop, &n->flush);
	if (!count) {
		release(n, true); /* nothing new since the last commit: the held may go */
		return;
	}
	size_t len = nft_batch_text(&n->cfg, n->queue, count, n->buf, n->buflen);
	if (!len) {
		n->n.errors++;
		forget(n, n->queue, count);
		report(n, "batch too long", "internal limit");
	} else if (nft_run_cmd_from_buffer(n->ctx, n->buf) != 0) {
		n->n.errors++;
		forget(n, n->queue, count);
		char what[200];
		snprintf(what, sizeof(what), "cannot add %zu addresses to table %s %s", count,
			 n->cfg.family, n->cfg.table);
		report(n, what, nft_ctx_get_error_buffer(n->ctx));
	} else {
		ok = true;
		n->n.batches++;
		n->n.added += count;
	}
	for (size_t i = 0; i < n->n_queue; i++) {
		/* Clear the queue marks: walk the slots of the queued addresses. */
		size_t h = hash_bytes(n->queue[i].addr, 16) & (SEEN_SLOTS - 1);
		for (size_t p = 0; p < SEEN_SLOTS; p++, h = (h + 1) & (SEEN_SLOTS - 1)) {
			struct seen *e = &n->seen[h];
			if (!e->family)
				break;
			if (e->family == n->queue[i].family && memcmp(e->addr, n->queue[i].addr, 16) == 0) {
				e->queued = 0;
				e->fresh = false;
				break;
			}
		}
	}
	n->n_queue = 0;
	release(n, ok);
}

static void commit_now_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	(void)loop;
	(void)revents;
	commit(w->data);
}

bool nft_hold(struct nft *n, struct nft_waiter *w)
{
	if (!w) {
		n->n.unconfirmed++;
		return false;
	}
	if (n->n_held == NFT_HOLD_MAX) {
		/* Bounded: commit what is queued, this answer's addresses too. */
		commit(n);
		return false;
	}
	w->next = NULL;
	*n->held_tail = w;
	n->held_tail = &w->next;
	n->n_held++;
	n->n.held++;
	if (!ev_is_active(&n->commit_now))
		ev_prepare_start(n->srv->loop, &n->commit_now);
	return true;
}

static void flush_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	commit(w->data);
}

/**
 * Queue addr unless it was queued with an expiry this late or later.
 * @return true when addr is queued and was not in the set before
 */
static bool learn_addr(struct nft *n, int family, const uint8_t *raw, uint32_t ttl)
{
	uint8_t addr[16] = { 0 };
	uint32_t timeout = nft_timeout(ttl, n->cfg.grace), now = now_s();
	uint32_t expires = now + timeout;

	if ((family == 4 && !n->cfg.set4[0]) || (family == 6 && !n->cfg.set6[0]))
		return false;
	memcpy(addr, raw, family == 4 ? 4 : 16);
	if (n->n_seen >= SEEN_FULL) {
		/* Forgetting only costs re-adding: start over rather than evict. */
		if (n->n_queue)
			commit(n);
		memset(n->seen, 0, SEEN_SLOTS * sizeof(*n->seen));
		n->n_seen = 0;
	}
	size_t h = hash_bytes(addr, 16) & (SEEN_SLOTS - 1);
	struct seen *e;
	for (;; h = (h + 1) & (SEEN_SLOTS - 1)) {
		e = &n->seen[h];
		if (!e->family) {
			e->family = (uint8_t)family;
			memcpy(e->addr, addr, 16);
			e->expires = 0;
			e->queued = 0;
			e->fresh = false;
			n->n_seen++;
			break;
		}
		if (e->family == family && memcmp(e->addr, addr, 16) == 0)
			break;
	}
	if (e->queued) {
		struct nft_item *it = &n->queue[e->queued - 1];
		if (timeout > it->timeout) {
			it->timeout = timeout;
			e->expires = expires;
		}
		return e->fresh;
	}
	/* In the set, and this would not move its expiry by much. */
	if (e->expires > now && expires <= e->expires + NFT_REFRESH_MARGIN)
		return false;
	struct nft_item *it = &n->queue[n->n_queue++];
	it->family = (uint8_t)family;
	memcpy(it->addr, addr, 16);
	it->timeout = timeout;
	e->fresh = e->expires <= now;
	e->expires = expires;
	e->queued = (uint32_t)n->n_queue;
	if (n->n_queue == NFT_BATCH) {
		/* A burst of new addresses: commit a full batch now rather than drop later. */
		commit(n);
		return false;
	}
	if (!ev_is_active(&n->flush)) {
		ev_timer_set(&n->flush, NFT_FLUSH_DELAY, 0);
		ev_timer_start(n->srv->loop, &n->flush);
	}
	return e->fresh;
}

struct learning {
	struct nft *n;
	bool fresh;   /**< an address of the answer is new to its set */
};

static void learn_cb(void *arg, int family, const uint8_t *addr, uint32_t ttl)
{
	struct learning *l = arg;

	if (learn_addr(l->n, family, addr, ttl))
		l->fresh = true;
}

bool nft_learn(struct nft *n, const uint8_t *msg, size_t len)
{
	struct learning l = { n, false };

	if (n)
		nft_answer_addresses(msg, len, learn_cb, &l);
	return l.fresh;
}

bool nft_counters(const struct nft *n, struct nft_counters *out)
{
	if (!n)
		return false;
	*out = n->n;
	return true;
}

/** Say at start and reload whether the sets are there to be filled. */
static void check_sets(struct nft *n)
{
	const char *sets[] = { n->cfg.set4, n->cfg.set6 };
	char cmd[256];

	for (size_t i = 0; i < 2; i++) {
		if (!sets[i][0])
			continue;
		snprintf(cmd, sizeof(cmd), "list set %s %s %s", n->cfg.family, n->cfg.table, sets[i]);
		if (nft_run_cmd_from_buffer(n->ctx, cmd) != 0) {
			char msg[512];
			snprintf(msg, sizeof(msg), "%s", nft_ctx_get_error_buffer(n->ctx));
			msg[strcspn(msg, "\n")] = '\0';
			/* Without the capability the kernel refuses even to list a set
			 * that exists: creating it again would not help. */
			if (strstr(msg, "Operation not permitted"))
				log_warn("nftables: set %s %s %s cannot be read or filled (%s): this process "
					 "lacks CAP_NET_ADMIN; under systemd add it in a drop-in "
					 "(systemctl edit acrdnsd: AmbientCapabilities= and "
					 "CapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_NET_ADMIN)",
					 n->cfg.family, n->cfg.table, sets[i], msg);
			else
				log_warn("nftables: set %s %s %s is not usable (%s); create it with the "
					 "ruleset from 'acrdnsd --print-nft'", n->cfg.family, n->cfg.table,
					 sets[i], msg);
		}
	}
}

int nft_configure(struct server *s, const struct config *cfg, char *err, size_t errlen)
{
	struct nft *n = s->nft;
	(void)err;
	(void)errlen;

	if (!cfg->nft.enabled) {
		nft_free(s);
		return 0;
	}
	if (n && memcmp(&n->cfg, &cfg->nft, sizeof(n->cfg)) == 0)
		return 0;
	nft_free(s);
	if (!(n = calloc(1, sizeof(*n))) || !(n->seen = calloc(SEEN_SLOTS, sizeof(*n->seen))) ||
	    !(n->buf = malloc(n->buflen = NFT_BATCH * 3 * 64 + 1024)) ||
	    !(n->ctx = nft_ctx_new(NFT_CTX_DEFAULT))) {
		if (n) {
			free(n->seen);
			free(n->buf);
		}
		free(n);
		snprintf(err, errlen, "nftables: out of memory");
		return -1;
	}
	nft_ctx_buffer_output(n->ctx);
	nft_ctx_buffer_error(n->ctx);
	n->srv = s;
	n->cfg = cfg->nft;
	ev_init(&n->flush, flush_cb);
	n->flush.data = n;
	ev_prepare_init(&n->commit_now, commit_now_cb);
	n->commit_now.data = n;
	n->held_tail = &n->held;
	s->nft = n;
	check_sets(n);
	log_info("nftables: addresses of allowed answers go to %s %s %s%s%s (timeout TTL + %" PRIu32 " s)",
		 n->cfg.family, n->cfg.table, n->cfg.set4, n->cfg.set4[0] && n->cfg.set6[0] ? " and " : "",
		 n->cfg.set6, n->cfg.grace);
	return 0;
}

void nft_free(struct server *s)
{
	struct nft *n = s->nft;

	if (!n)
		return;
	commit(n); /* and send what is held */
	ev_timer_stop(s->loop, &n->flush);
	ev_prepare_stop(s->loop, &n->commit_now);
	nft_ctx_free(n->ctx);
	free(n->seen);
	free(n->buf);
	free(n);
	s->nft = NULL;
}

#else /* !HAVE_NFTABLES */

bool nft_learn(struct nft *n, const uint8_t *msg, size_t len)
{
	(void)n;
	(void)msg;
	(void)len;
	return false;
}

bool nft_hold(struct nft *n, struct nft_waiter *w)
{
	(void)n;
	(void)w;
	return false;
}

bool nft_counters(const struct nft *n, struct nft_counters *out)
{
	(void)n;
	(void)out;
	return false;
}

int nft_configure(struct server *s, const struct config *cfg, char *err, size_t errlen)
{
	(void)s;
	if (cfg->nft.enabled) {
		snprintf(err, errlen, "%s: 'nftables' is set, but this acrdnsd was built without "
			 "libnftables (configure --with-nftables)", cfg->path);
		return -1;
	}
	return 0;
}

void nft_free(struct server *s)
{
	(void)s;
}

#endif
