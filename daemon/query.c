/**
 * \file query.c
 * The query path.  Order matters: nothing is forwarded before the access
 * check and the policy have spoken, and a denied name never reaches the
 * cache or an upstream.
 */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "address.h"
#include "audit.h"
#include "failcache.h"
#include "listener.h"
#include "log.h"
#include "loopdetect.h"
#include "nft.h"
#include "query.h"
#include "ratelimit.h"
#include "scrub.h"
#include "server.h"
#include "upstream.h"

#define EDE_STALE 3
#define EDE_NOT_AUTHORITATIVE 20

_Static_assert(VERDICT_COUNT == STATS_VERDICTS, "stats count every verdict");

/** @return true for the verdicts that log.queries = "denied" writes. */
static bool verdict_logged_as_denied(enum verdict v)
{
	return v == VERDICT_DENY || v == VERDICT_AUDIT;
}

static void log_decision(const struct server *s, const struct reply_to *rt,
			 const struct wire_query *q, const struct policy_decision *d,
			 const char *rule, const char *via)
{
	char peer[64], name[WIRE_NAME_STRLEN], tbuf[16];

	if (s->cfg->log_queries == QLOG_NONE ||
	    (s->cfg->log_queries == QLOG_DENIED && !verdict_logged_as_denied(d->verdict)))
		return;
	address_str((const struct sockaddr *)&rt->peer, peer, sizeof(peer));
	wire_name_str(q->qname, name);
	log_query(&(struct log_query_fields){
		.client = peer, .proto = rt->tcp ? "tcp" : "udp", .name = name,
		.type = wire_type_str(q->qtype, tbuf), .verdict = policy_verdict_name(d->verdict),
		.rule = rule, .via = via,
	});
}

/**
 * Add our OPT (when the client sent EDNS), truncating to the header and
 * question with TC when the client cannot take the whole.
 * @return the length to send
 */
static size_t complete(struct server *s, const struct reply_to *rt, const struct wire_query *q,
		       size_t len, uint8_t ext_rcode, uint16_t ede_code, const char *ede_text)
{
	uint8_t *out = s->out;
	size_t max = listener_max_reply(rt, q);
	size_t opt = q->edns ? 11 + (ede_text ? 6 + strlen(ede_text) : 0) : 0;

	if (len + opt > max && q->has_question) {
		len = WIRE_HDR + q->qname_len + 4u;
		wire_put16(out + 2, wire_get16(out + 2) | WIRE_TC);
		memset(out + 6, 0, 6);
		ede_text = NULL;
		STAT_INC(s->stats.truncated);
	}
	if (q->edns) {
		size_t n = wire_opt_append(out, len, sizeof(s->out) - 2, ext_rcode, q->edns_do,
					   ede_code, ede_text);
		if (n)
			len = n;
	}
	return len;
}

static void finish(struct server *s, const struct reply_to *rt, const struct wire_query *q,
		   size_t len, uint8_t ext_rcode, uint16_t ede_code, const char *ede_text)
{
	listener_reply(rt, s->out, complete(s, rt, q, len, ext_rcode, ede_code, ede_text));
}

/** A copy of an answer that waits for its addresses' nftables commit. */
struct held_answer {
	struct nft_waiter w;      /**< first: nft links and releases it */
	struct reply_to rt;
	size_t len;
	uint8_t msg[];
};

/** nft says a held answer may go: send it, and let its client go on. */
static void held_go(struct nft_waiter *w, bool last)
{
	struct held_answer *h = (struct held_answer *)(void *)w;

	listener_reply(&h->rt, h->msg, h->len);
	listener_release(&h->rt);
	free(h);
	/* Out now: nft's commit may run after the listener's own flush in this pass. */
	if (last)
		listener_flush();
}

/**
 * Send an answer whose addresses went to the nftables sets; when one is
 * new there, the answer waits for the commit (fresh), so that a client
 * that connects at once is not dropped by the firewall.
 */
static void finish_learned(struct server *s, const struct reply_to *rt, size_t len, bool fresh)
{
	struct held_answer *h;

	if (!fresh || (!rt->udp && !rt->tcp)) {
		/* Nothing new to wait for, or nobody to answer (a prefetch). */
		listener_reply(rt, s->out, len);
		return;
	}
	h = malloc(sizeof(*h) + len);
	if (h) {
		h->w.go = held_go;
		h->rt = *rt;
		h->len = len;
		memcpy(h->msg, s->out, len);
		listener_hold(&h->rt);
	}
	if (nft_hold(s->nft, h ? &h->w : NULL))
		return;
	if (h) {
		listener_release(&h->rt);
		free(h);
	}
	listener_reply(rt, s->out, len);
}

static void reply_error(struct server *s, const struct reply_to *rt, const struct wire_query *q,
			uint16_t rcode)
{
	size_t len = wire_reply_begin(s->out, q, rcode & 0xf);

	finish(s, rt, q, len, (uint8_t)(rcode >> 4), 0, NULL);
}

static bool access_allowed(const struct config *cfg, const struct sockaddr_storage *peer)
{
	for (size_t i = 0; i < cfg->n_access; i++)
		if (address_net_contains(&cfg->access[i], (const struct sockaddr *)peer))
			return true;
	return false;
}

static bool rate_exempt(const struct config *cfg, const struct sockaddr_storage *peer)
{
	for (size_t i = 0; i < cfg->rate_limit.n_exempt; i++)
		if (address_net_contains(&cfg->rate_limit.exempt[i], (const struct sockaddr *)peer))
			return true;
	return false;
}

/** Append an SOA for the query's name, so that clients cache the negative answer. */
static size_t put_soa(uint8_t *out, size_t len, uint32_t ttl)
{
	static const uint8_t rdata_names[] = {
		6, 'a', 'c', 'r', 'd', 'n', 's', 7, 'i', 'n', 'v', 'a', 'l', 'i', 'd', 0,
		10, 'h', 'o', 's', 't', 'm', 'a', 's', 't', 'e', 'r', 0xc0, 0, /* -> mname */
	};
	uint8_t *p = out + len;
	size_t mname = len + 12;

	wire_put16(p, 0xc000 | WIRE_HDR); /* owner: the question's name */
	wire_put16(p + 2, LDNS_RR_TYPE_SOA);
	wire_put16(p + 4, LDNS_RR_CLASS_IN);
	wire_put32(p + 6, ttl);
	wire_put16(p + 10, (uint16_t)(sizeof(rdata_names) + 20));
	memcpy(p + 12, rdata_names, sizeof(rdata_names));
	wire_put16(p + 12 + sizeof(rdata_names) - 2, (uint16_t)(0xc000 | mname));
	p += 12 + sizeof(rdata_names);
	wire_put32(p, 1);          /* serial */
	wire_put32(p + 4, 3600);   /* refresh */
	wire_put32(p + 8, 600);    /* retry */
	wire_put32(p + 12, 86400); /* expire */
	wire_put32(p + 16, ttl);   /* minimum: the negative TTL (RFC 2308) */
	wire_count_inc(out, 8);
	return len + 12 + sizeof(rdata_names) + 20;
}

/** Answer as denied; the EDE text is who blocked it (by) and why. */
static void answer_deny(struct server *s, const struct reply_to *rt, const struct wire_query *q,
			const char *by, const char *rule)
{
	static const uint16_t rcodes[] = { LDNS_RCODE_NXDOMAIN, LDNS_RCODE_NOERROR,
					   LDNS_RCODE_REFUSED };
	char ede[200];
	enum cfg_deny_response how = s->cfg->deny_response;
	size_t len = wire_reply_begin(s->out, q, rcodes[how]);

	if (how != DENY_REFUSED) {
		wire_put16(s->out + 2, wire_get16(s->out + 2) | WIRE_AA);
		len = put_soa(s->out, len, s->cfg->deny_ttl);
	}
	snprintf(ede, sizeof(ede), "%s: %s", by, rule);
	finish(s, rt, q, len, 0, EDE_BLOCKED, ede);
}

static void answer_local(struct server *s, const struct reply_to *rt, const struct wire_query *q,
			 const struct cfg_local *l)
{
	uint8_t *out = s->out;
	size_t len = wire_reply_begin(out, q, LDNS_RCODE_NOERROR);
	bool a = q->qtype == LDNS_RR_TYPE_A || q->qtype == LDNS_RR_TYPE_ANY;
	bool aaaa = q->qtype == LDNS_RR_TYPE_AAAA || q->qtype == LDNS_RR_TYPE_ANY;
	size_t n = 0;

	wire_put16(out + 2, wire_get16(out + 2) | WIRE_AA);
	/* 28 bytes an AAAA record: 2048 of them stay far below 64 KiB. */
	for (size_t i = 0; a && i < l->n4 && i < 1024; i++, n++) {
		uint8_t *p = out + len;
		wire_put16(p, 0xc000 | WIRE_HDR);
		wire_put16(p + 2, LDNS_RR_TYPE_A);
		wire_put16(p + 4, LDNS_RR_CLASS_IN);
		wire_put32(p + 6, l->ttl);
		wire_put16(p + 10, 4);
		memcpy(p + 12, l->v4[i], 4);
		len += 16;
	}
	for (size_t i = 0; aaaa && i < l->n6 && i < 1024; i++, n++) {
		uint8_t *p = out + len;
		wire_put16(p, 0xc000 | WIRE_HDR);
		wire_put16(p + 2, LDNS_RR_TYPE_AAAA);
		wire_put16(p + 4, LDNS_RR_CLASS_IN);
		wire_put32(p + 6, l->ttl);
		wire_put16(p + 10, 16);
		memcpy(p + 12, l->v6[i], 16);
		len += 28;
	}
	wire_put16(out + 6, (uint16_t)n);
	if (n == 0)
		len = put_soa(out, len, l->ttl); /* NODATA for other types */
	bool fresh = n && s->nft && nft_learn(s->nft, out, len);
	finish_learned(s, rt, complete(s, rt, q, len, 0, 0, NULL), fresh);
}

/** Send an answer already rendered into s->out. */
static void answer_rendered(struct server *s, const struct reply_to *rt, const struct wire_query *q,
			    size_t len, bool stale, enum verdict verdict)
{
	/* Before complete(): a reply cut for UDP still teaches the set its addresses.
	 * Audit mode's answers too: a dry run must not break at the firewall. */
	bool fresh = s->nft && (verdict == VERDICT_ALLOW || verdict == VERDICT_AUDIT) &&
		     nft_learn(s->nft, s->out, len);

	finish_learned(s, rt, stale ? complete(s, rt, q, len, 0, EDE_STALE, "")
				    : complete(s, rt, q, len, 0, 0, NULL), fresh);
}

/** The cache key of a client's question: name, type, class, DO and CD. */
static struct cache_key key_of(const struct wire_query *q)
{
	return (struct cache_key){ q->qname, q->qname_len, q->qtype, q->qclass,
				   (uint8_t)((q->edns_do ? CACHE_KEY_DO : 0) |
					     ((q->flags & WIRE_CD) ? CACHE_KEY_CD : 0)) };
}

/**
 * The policy-generation rule, the one place it is written: an answer with
 * targets that the current policy did not check may not go to a client
 * whose name filter mode only passed.  It is fetched anew and checked.
 */
static bool cached_usable(const struct server *s, enum verdict verdict, uint32_t gen,
			  bool has_target)
{
	/* An audited name's answer is cached whole, as an allowed one's. */
	return !(verdict == VERDICT_PASS && has_target && gen != s->policy_gen);
}

/**
 * The cached answer for q, rendered into s->out when usable for a client
 * with this verdict.
 * @return CACHE_FRESH or CACHE_STALE with *len set, or CACHE_MISS
 */
static enum cache_status fetch_cached(struct server *s, const struct wire_query *q,
				      enum verdict verdict, size_t *len)
{
	struct cache_key key = key_of(q);
	uint32_t gen;
	bool has_target;
	enum cache_status st = cache_fetch(s->cache, &key, server_now_ms(), q, s->out, len, &gen,
					   &has_target);

	return st != CACHE_MISS && cached_usable(s, verdict, gen, has_target) ? st : CACHE_MISS;
}

/** A fresh cached answer for q, rendered into s->out. */
static bool fetch_fresh(struct server *s, const struct wire_query *q, enum verdict verdict,
			size_t *len)
{
	return fetch_cached(s, q, verdict, len) == CACHE_FRESH;
}

/** @return the RCODE for a type no query may ask (FORMERR, NOTIMP), or 0 for the rest. */
static int special_type_rcode(uint16_t qtype)
{
	switch (qtype) {
	case LDNS_RR_TYPE_OPT:
	case LDNS_RR_TYPE_TSIG:
	case LDNS_RR_TYPE_TKEY:
		return LDNS_RCODE_FORMERR;
	case LDNS_RR_TYPE_AXFR:
	case LDNS_RR_TYPE_IXFR:
	case LDNS_RR_TYPE_MAILA:
	case LDNS_RR_TYPE_MAILB:
		return LDNS_RCODE_NOTIMPL;
	default:
		return 0;
	}
}

/**
 * Log the policy's decision as log.queries asks, and count it.  rule
 * receives the rule's text when a log line or a denial needs it.
 */
static void note_decision(struct server *s, const struct reply_to *rt, const struct wire_query *q,
			  const struct policy_decision *d, char *rule, size_t rule_len)
{
	bool logged = s->cfg->log_queries == QLOG_ALL ||
		      (s->cfg->log_queries == QLOG_DENIED && verdict_logged_as_denied(d->verdict));

	if (logged || verdict_logged_as_denied(d->verdict))
		policy_describe(s->policy, d, rule, rule_len);
	if (logged)
		log_decision(s, rt, q, d, rule, NULL);
	if (rt->udp || rt->tcp)
		STAT_INC(s->stats.verdicts[rt->tcp != NULL][d->verdict]);
	switch (d->verdict) {
	case VERDICT_LOCAL: STAT_INC(s->stats.local); break;
	case VERDICT_DENY: STAT_INC(s->stats.denied); break;
	case VERDICT_ALLOW: STAT_INC(s->stats.allowed); break;
	case VERDICT_PASS: STAT_INC(s->stats.passed); break;
	case VERDICT_AUDIT:
		STAT_INC(s->stats.audited);
		audit_note(s->audit, q->qname, q->qname_len, rule);
		break;
	default: break;
	}
}

/** Answer a local or denied name.  @return false for names that need the cache or upstream. */
static bool answer_decided(struct server *s, const struct reply_to *rt, const struct wire_query *q,
			   const struct policy_decision *d, const char *rule)
{
	if (d->verdict == VERDICT_LOCAL)
		answer_local(s, rt, q, policy_local(s->policy, d));
	else if (d->verdict == VERDICT_DENY)
		answer_deny(s, rt, q, "blocked by acrdns", rule);
	else
		return false;
	return true;
}

/* ---- clients waiting for upstream ---- */

/**
 * A client waiting for upstream, in its question's waiters list.  The list
 * is query.c's alone: upstream keeps it and hands it back with the
 * outcome, and every answer to these clients is sent from here.
 */
struct query_client {
	struct query_client *next;
	struct reply_to rt;
	struct wire_query q;
	enum verdict verdict;
};

static void client_done(struct query_client *c)
{
	listener_release(&c->rt);
	free(c);
}

/** Answer a waiting client with what fetch_cached() rendered into s->out, then free it. */
static void client_answer(struct server *s, struct query_client *c, size_t len, bool stale)
{
	if (stale)
		STAT_INC(s->stats.stale_served);
	answer_rendered(s, &c->rt, &c->q, len, stale, c->verdict);
	client_done(c);
}

/** SERVFAIL, saying why (RFC 8914: 22 No Reachable Authority, 23 Network Error). */
static void reply_servfail(struct server *s, const struct reply_to *rt, const struct wire_query *q,
			   uint16_t ede, const char *why)
{
	size_t len = wire_reply_begin(s->out, q, LDNS_RCODE_SERVFAIL);

	STAT_INC(s->stats.servfail);
	finish(s, rt, q, len, 0, ede, why);
}

/**
 * Answer a waiting client as denied because a target in its answer is
 * denied (d and target say which), cannot be read, or is the ".invalid"
 * name an upstream blocks with (target), then free it.  In audit mode
 * (d->verdict VERDICT_AUDIT, or an unreadable target under an audit
 * policy) the client gets the answer m instead, and the question is
 * logged and counted as audited.  A block decided upstream is no rule of
 * ours: audit mode answers it as denied all the same.
 */
static void client_deny_chain(struct server *s, struct query_client *c, enum chain_check why,
			      const struct policy_decision *d, const uint8_t *target,
			      const struct cache_msg *m)
{
	static const struct policy_decision unreadable = { VERDICT_DENY, -1, NULL, -1 };
	static const struct policy_decision unreadable_audit = { VERDICT_AUDIT, -1, NULL, -1 };
	/* rule may hold via: an escaped name is up to WIRE_NAME_STRLEN long. */
	char rule[400 + WIRE_NAME_STRLEN], via[WIRE_NAME_STRLEN];
	const char *by = "blocked by acrdns";

	if (why == CHAIN_UNREADABLE) {
		d = s->policy->audit ? &unreadable_audit : &unreadable;
		snprintf(rule, sizeof(rule), "a target in the answer cannot be decoded");
		strcpy(via, "?");
	} else if (why == CHAIN_BLOCKED) {
		/* The upstream's own filter said no (Azure DNS Security Policy):
		 * say so, not that a rule of ours did. */
		d = &unreadable;
		wire_name_str(target, via);
		snprintf(rule, sizeof(rule), "the answer's chain ends in %s", via);
		by = "blocked upstream";
	} else {
		policy_describe(s->policy, d, rule, sizeof(rule));
		wire_name_str(target, via);
	}
	if (s->cfg->log_queries != QLOG_NONE)
		log_decision(s, &c->rt, &c->q, d, rule, via);
	if (d->verdict == VERDICT_AUDIT) {
		/* The question is counted under the name the client asked, with
		 * the target that would have denied it. */
		char why_text[sizeof(rule) + sizeof(via) + 16];   /* the table keeps its own bound */
		snprintf(why_text, sizeof(why_text), "%s, target %s", rule, via);
		STAT_INC(s->stats.audited);
		audit_note(s->audit, c->q.qname, c->q.qname_len, why_text);
		client_answer(s, c, cache_render(m, 0, false, &c->q, s->out), false);
		return;
	}
	if (why == CHAIN_BLOCKED)
		STAT_INC(s->stats.upstream_blocked);
	else
		STAT_INC(s->stats.cname_denied);
	answer_deny(s, &c->rt, &c->q, by, rule);
	client_done(c);
}

/**
 * Answer a client from a stale (or fresh) cached answer when there is one
 * it may have; else SERVFAIL saying why when why is set.
 * @return false when the client was kept waiting (neither)
 */
static bool client_try_stale(struct server *s, struct query_client *c,
			     const struct upstream_failure *why)
{
	size_t len;
	enum cache_status st = fetch_cached(s, &c->q, c->verdict, &len);

	if (st != CACHE_MISS) {
		client_answer(s, c, len, st == CACHE_STALE);
		return true;
	}
	if (!why)
		return false;
	reply_servfail(s, &c->rt, &c->q, why->ede, why->text);
	client_done(c);
	return true;
}

/** When upstream cannot even be asked (no server, too many questions in flight). */
static const struct upstream_failure not_asked = { 22, "no upstream could be asked" };

/**
 * A question failed upstream: remember it (RFC 9520), and say why in the
 * log, at info for the first failure of a run (an outage of many names
 * logs each name once), at debug for the failures that back it off.
 */
static void note_failed(struct server *s, const struct cache_key *key,
			const struct upstream_failure *why)
{
	char name[WIRE_NAME_STRLEN], tbuf[16];
	uint32_t hold = failcache_fail(s->fails, key, server_now_ms(), why->ede, why->text);

	if (hold > FAILCACHE_HOLD_MIN_MS && !log_enabled(LOG_LVL_DEBUG))
		return;
	wire_name_str(key->name, name);
	log_msg(hold > FAILCACHE_HOLD_MIN_MS ? LOG_LVL_DEBUG : LOG_LVL_INFO,
		"%s %s failed: %s; answered from stale or SERVFAIL for %.0f s", name,
		wire_type_str(key->qtype, tbuf), why->text, hold / 1000.0);
}

/**
 * Scrub a prepared upstream answer (scrub_answer() under the current
 * policy), counting what goes.  When records go, the rebuilt message is
 * prepared again, so that the TTL offsets the cache keeps are those of
 * what is left and the cache never holds what was removed.
 * @param a the answer as upstream prepared it
 * @return the answer to use: a, or the rebuilt one (valid until the next
 *         call); NULL when a record that would stay cannot be decoded or
 *         the message cannot be read (the answer must be refused whole)
 */
static const struct cache_answer *scrub_prepared(struct server *s, const struct cache_answer *a)
{
	/* The main loop's alone, as srv->answer is: workers never see upstream. */
	static uint8_t buf[65535];
	static struct cache_answer rebuilt;
	struct scrub_result r;
	size_t out_len;

	switch (scrub_answer(s->policy, a->msg, a->len, buf, sizeof(buf), &out_len, &r)) {
	case SCRUB_CLEAN:
		return a;
	case SCRUB_REWRITTEN:
		break;
	default:
		return NULL;
	}
	STAT_ADD(s->stats.scrubbed, r.removed[0] + r.removed[1] + r.removed[2]);
	if (log_enabled(LOG_LVL_DEBUG)) {
		char name[WIRE_NAME_STRLEN];
		uint8_t q[WIRE_NAME_MAX + 1];
		size_t pos = WIRE_HDR;
		if (wire_name_read(buf, out_len, &pos, q) > 0) {
			wire_name_str(q, name);
			log_debug("answer for %s scrubbed: %u answer, %u authority, %u additional "
				  "records removed", name, r.removed[0], r.removed[1], r.removed[2]);
		}
	}
	if (cache_prepare(buf, out_len, &s->ttl, &rebuilt) < 0)
		return NULL;
	return &rebuilt;
}

/**
 * A reply arrived: scrub it, check its chain, cache it when it may be
 * kept, and answer every client.
 */
static void answer_waiters(struct server *s, const struct cache_key *key,
			   const struct cache_answer *a, struct query_client *c)
{
	struct policy_decision d, own;
	uint8_t target[WIRE_NAME_MAX + 3];
	enum chain_check chain;
	/* Scrubbed before anything reads or keeps it: what goes never
	 * reaches the cache, the chain check or a client. */
	const struct cache_answer *scrubbed = scrub_prepared(s, a);

	chain = scrubbed ? query_chain_check(s, scrubbed, &d, target) : CHAIN_UNREADABLE;
	/* What cannot be scrubbed is only ever sent whole by audit mode,
	 * whose clients get what they would without acrdns. */
	if (scrubbed)
		a = scrubbed;
	struct cache_msg m = { a->msg, a->len, a->nttl, a->ttl_off };
	/* An answer for a name that a rule allows is trusted whole (Azure's
	 * own chains run through names a deny rule covers) and kept, and so
	 * is an audited one's.  One that only filter mode's default let
	 * through is not kept when a target is denied: the next client is
	 * checked again. */
	if (chain != CHAIN_CLEAN)
		policy_decide(s->policy, key->name, key->name_len, &own);
	/* A block decided upstream is answered as one for every client and
	 * not kept: its TTL (10^9 from Azure) is not ours to serve.  So is an
	 * answer with a name we cannot decode: it cannot be scrubbed. */
	bool everyone = chain == CHAIN_BLOCKED || chain == CHAIN_UNREADABLE;
	if (chain == CHAIN_CLEAN ||
	    (!everyone && (own.verdict == VERDICT_ALLOW || own.verdict == VERDICT_AUDIT)))
		cache_insert(s->cache, key, a, server_now_ms(), s->ttl.stale_ttl, s->policy_gen);
	for (struct query_client *next; c; c = next) {
		next = c->next;
		if (everyone || (chain != CHAIN_CLEAN && c->verdict == VERDICT_PASS))
			client_deny_chain(s, c, chain, &d, target, &m);
		else
			client_answer(s, c, cache_render(&m, 0, false, &c->q, s->out), false);
	}
}

/** upstream's callback: how the question these clients wait for went. */
static void upstream_done(void *arg, enum upstream_outcome outcome, const struct cache_key *key,
			  const struct cache_answer *a, const struct upstream_failure *why,
			  void **waiters)
{
	struct server *s = arg;
	struct query_client *c = *waiters, *next, *keep = NULL;

	*waiters = NULL;
	switch (outcome) {
	case UPSTREAM_ANSWER:
		failcache_forget(s->fails, key);
		answer_waiters(s, key, a, c);
		return;
	case UPSTREAM_LATE:
		/* RFC 8767: stale now for whoever has one; the rest wait on. */
		for (; c; c = next) {
			next = c->next;
			if (!client_try_stale(s, c, NULL)) {
				c->next = keep;
				keep = c;
			}
		}
		*waiters = keep;
		return;
	case UPSTREAM_FAILED:
		note_failed(s, key, why);
		for (; c; c = next) {
			next = c->next;
			client_try_stale(s, c, why);
		}
		return;
	case UPSTREAM_ABANDONED:
		for (; c; c = next) {
			next = c->next;
			reply_servfail(s, &c->rt, &c->q, why->ede, why->text);
			client_done(c);
		}
		return;
	}
}

/** A miss: the client waits for the question in flight, or one started for it. */
static void ask_upstream(struct server *s, const struct reply_to *rt, const struct wire_query *q,
			 enum verdict verdict)
{
	struct query_client *c = malloc(sizeof(*c));
	bool late;

	if (!c) {
		STAT_INC(s->stats.servfail);
		reply_error(s, rt, q, LDNS_RCODE_SERVFAIL);
		return;
	}
	c->rt = *rt;
	c->q = *q;
	c->verdict = verdict;
	listener_hold(&c->rt);
	struct cache_key key = key_of(&c->q);
	void **waiters = upstream_resolve(s->up, &key, upstream_done, s, &late);
	if (!waiters) {
		/* No question to wait for: stale where there is one, else SERVFAIL. */
		client_try_stale(s, c, &not_asked);
		return;
	}
	/* Past its patience, a question has served stale already: so may this client. */
	if (late && client_try_stale(s, c, NULL))
		return;
	c->next = *waiters;
	*waiters = c;
}

/**
 * A query without RD that the cache cannot answer: REFUSED with EDE 20
 * "Not Authoritative", as unbound answers it.  A forwarder holds no zone
 * and may not recurse for it (RFC 1034 4.3.1); an empty NOERROR would be
 * cached by the asker as NODATA.  RA stays set: recursion is offered.
 */
static void answer_norec_miss(struct server *s, const struct reply_to *rt,
			      const struct wire_query *q)
{
	size_t len = wire_reply_begin(s->out, q, LDNS_RCODE_REFUSED);

	STAT_INC(s->stats.refused_norec);
	finish(s, rt, q, len, 0, EDE_NOT_AUTHORITATIVE, "not in the cache, and recursion not desired");
}

bool query_fast(struct server *s, const uint8_t *msg, size_t len, struct reply_to *rt)
{
	struct wire_query q;
	struct policy_decision d;
	char rule[400];
	size_t out_len = 0;

	/* Anything unusual, limited or forwarded belongs to the main loop,
	 * which counts it; here only what is answered is counted. */
	if (wire_query_parse(msg, len, &q) != WIRE_Q_OK || s->rl || !access_allowed(s->cfg, &rt->peer) ||
	    q.qclass != LDNS_RR_CLASS_IN || special_type_rcode(q.qtype) ||
	    loopdetect_is_probe(q.qname, q.qname_len))
		return false;
	policy_decide(s->policy, q.qname, q.qname_len, &d);
	/* Answers that feed the nftables sets are learned on the main loop. */
	if (s->main_nft && (d.verdict == VERDICT_ALLOW || d.verdict == VERDICT_LOCAL ||
			    d.verdict == VERDICT_AUDIT))
		return false;
	bool cached = d.verdict == VERDICT_ALLOW || d.verdict == VERDICT_PASS ||
		      d.verdict == VERDICT_AUDIT;
	bool hit = cached && fetch_fresh(s, &q, d.verdict, &out_len);
	/* A miss with RD=0 needs no upstream either: it is refused here. */
	if (cached && !hit && (q.flags & WIRE_RD))
		return false;
	STAT_INC(s->stats.queries_udp);
	note_decision(s, rt, &q, &d, rule, sizeof(rule));
	if (hit) {
		STAT_INC(s->stats.cache_hits);
		answer_rendered(s, rt, &q, out_len, false, d.verdict);
	} else if (cached) {
		STAT_INC(s->stats.cache_misses);
		answer_norec_miss(s, rt, &q);
	} else {
		answer_decided(s, rt, &q, &d, rule);
	}
	return true;
}

void query_listener_handle(void *srv, const uint8_t *msg, size_t len, struct reply_to *rt)
{
	struct server *s = srv;

	if (rt->tcp)
		STAT_INC(s->stats.queries_tcp);
	else
		STAT_INC(s->stats.queries_udp);
	query_handle(s, msg, len, rt);
}

/**
 * Everything a query must pass before the policy sees its name: who asks,
 * how often, and whether the message and its type and class are ones we
 * answer.  Answers (or drops) what fails.
 * @return true when the query goes on to the policy
 */
static bool screen(struct server *s, const struct reply_to *rt, struct wire_query *q,
		   enum wire_query_status st)
{
	if (st == WIRE_Q_DROP) {
		STAT_INC(s->stats.dropped);
		return false;
	}
	if (!access_allowed(s->cfg, &rt->peer)) {
		STAT_INC(s->stats.refused_access);
		reply_error(s, rt, q, LDNS_RCODE_REFUSED);
		return false;
	}
	if (s->rl && !rate_exempt(s->cfg, &rt->peer) &&
	    !ratelimit_allow(s->rl, (const struct sockaddr *)&rt->peer, server_now_ms())) {
		STAT_INC(s->stats.rate_limited);
		if (!s->cfg->rate_limit.drop)
			reply_error(s, rt, q, LDNS_RCODE_REFUSED);
		return false;
	}
	switch (st) {
	case WIRE_Q_FORMERR:
		STAT_INC(s->stats.formerr);
		/* q->edns is set only from an OPT read whole (RFC 6891 7). */
		reply_error(s, rt, q, LDNS_RCODE_FORMERR);
		return false;
	case WIRE_Q_NOTIMP:
		STAT_INC(s->stats.notimp);
		reply_error(s, rt, q, LDNS_RCODE_NOTIMPL);
		return false;
	case WIRE_Q_BADVERS:
		STAT_INC(s->stats.badvers);
		reply_error(s, rt, q, 16 /* BADVERS, RFC 6891 */);
		return false;
	default:
		break;
	}
	int special = special_type_rcode(q->qtype);
	if (special) {
		if (special == LDNS_RCODE_FORMERR)
			STAT_INC(s->stats.formerr);
		else
			STAT_INC(s->stats.notimp);
		reply_error(s, rt, q, (uint16_t)special);
		return false;
	}
	if (q->qclass != LDNS_RR_CLASS_IN) {
		/* CHAOS and the rest are not the registry's business. */
		STAT_INC(s->stats.refused_class);
		reply_error(s, rt, q, LDNS_RCODE_REFUSED);
		return false;
	}
	return true;
}

/**
 * A question that failed lately is answered without waiting: stale where
 * there is one (RFC 8767 4), else SERVFAIL with the reason it failed
 * (RFC 9520), while its hold-down lasts.  Past the hold-down but within
 * the recheck time, a stale answer still goes at once and one refresh
 * goes upstream behind it (joined by the next ones, so one at a time).
 * @return false when the query goes upstream as usual
 */
static bool answer_failed(struct server *s, const struct reply_to *rt, const struct wire_query *q,
			  enum verdict verdict)
{
	struct cache_key key = key_of(q);
	const struct failcache_why *why;
	enum failcache_state st = failcache_check(s->fails, &key, server_now_ms(), &why);
	size_t len;

	if (st == FAILCACHE_NONE)
		return false;
	if (fetch_cached(s, q, verdict, &len) == CACHE_STALE) {
		STAT_INC(s->stats.stale_served);
		answer_rendered(s, rt, q, len, true, verdict);
		if (st == FAILCACHE_RECHECK) {
			/* One refresh behind the stale answer, with no client of
			 * its own: its answer goes to the cache.  A refresh in
			 * flight is joined, not repeated. */
			bool late;
			(void)upstream_resolve(s->up, &key, upstream_done, s, &late);
		}
		return true;
	}
	if (st == FAILCACHE_RECHECK)
		return false;
	STAT_INC(s->stats.failure_cached);
	reply_servfail(s, rt, q, why->ede, why->text);
	return true;
}

void query_handle(struct server *s, const uint8_t *msg, size_t len, struct reply_to *rt)
{
	struct wire_query q;
	struct policy_decision d;
	char rule[400];
	size_t out_len;

	if (!screen(s, rt, &q, wire_query_parse(msg, len, &q)))
		return;
	if (loopdetect_is_probe(q.qname, q.qname_len)) {
		/* Ours, whether or not this check sent it: never forwarded. */
		loopdetect_arrived(s->loopdetect, q.qname, q.qname_len, &rt->peer);
		reply_error(s, rt, &q, LDNS_RCODE_NXDOMAIN);
		return;
	}
	policy_decide(s->policy, q.qname, q.qname_len, &d);
	note_decision(s, rt, &q, &d, rule, sizeof(rule));
	if (answer_decided(s, rt, &q, &d, rule))
		return;
	if (fetch_fresh(s, &q, d.verdict, &out_len)) {
		STAT_INC(s->stats.cache_hits);
		answer_rendered(s, rt, &q, out_len, false, d.verdict);
		return;
	}
	STAT_INC(s->stats.cache_misses);
	/* RD=0: the cache's answer or none; nothing is forwarded. */
	if (!(q.flags & WIRE_RD)) {
		answer_norec_miss(s, rt, &q);
		return;
	}
	if (answer_failed(s, rt, &q, d.verdict))
		return;
	ask_upstream(s, rt, &q, d.verdict);
}

void query_prefetch(struct server *s, const uint8_t *name, size_t len, uint16_t qtype)
{
	struct wire_query q;

	struct cache_key key = { name, (uint16_t)len, qtype, LDNS_RR_CLASS_IN, 0 };
	if (cache_fresh(s->cache, &key, server_now_ms()))
		return;
	memset(&q, 0, sizeof(q));
	q.flags = WIRE_RD;
	q.qtype = qtype;
	q.qclass = LDNS_RR_CLASS_IN;
	q.qname_len = (uint16_t)len;
	memcpy(q.qname, name, len);
	memcpy(q.qname_raw, name, len);
	q.has_question = true;
	q.edns = true;
	q.edns_size = WIRE_EDNS_SIZE;
	/* No transport in reply_to: the answer is cached and not sent anywhere. */
	ask_upstream(s, &(struct reply_to){ 0 }, &q, VERDICT_ALLOW);
}

/**
 * Read the target of a record that has one into target.
 * @return its length, 0 for none (an SVCB TargetName of "."), -1 when it
 * cannot be decoded
 */
static int read_target(const uint8_t *msg, size_t len, const struct wire_rr *rr, uint8_t *target)
{
	int n;

	if (rr->type == LDNS_RR_TYPE_DNAME) {
		/* A DNAME moves a whole subtree: check a name below the
		 * target, which wildcard rules on the target cover.  A
		 * label "*" never stands in the rule table as an exact name.
		 * The names it rewrites in this answer are checked too. */
		target[0] = 1;
		target[1] = '*';
		n = scrub_rdata_target(msg, len, rr, target + 2);
		if (n < 0 || n + 2 > WIRE_NAME_MAX)
			return -1;
		return n + 2;
	}
	return scrub_rdata_target(msg, len, rr, target);
}

enum chain_check query_chain_check(const struct server *s, const struct cache_answer *a,
				   struct policy_decision *d, uint8_t *target)
{
	size_t pos = WIRE_HDR;
	unsigned total = (unsigned)wire_get16(a->msg + 6) + wire_get16(a->msg + 8) +
			 wire_get16(a->msg + 10);
	struct wire_rr rr;
	struct scrub_chain chain;

	if (!a->has_target)
		return CHAIN_CLEAN;
	if (scrub_chain_walk(a->msg, a->len, &chain) < 0)
		return CHAIN_UNREADABLE;
	int invalid = scrub_chain_invalid(&chain);
	if (invalid >= 0) {
		memcpy(target, chain.name[invalid], chain.len[invalid]);
		return CHAIN_BLOCKED;
	}
	/* RFC 6672 2.2: the question (or a chain name) as a DNAME rewrites
	 * it is where a DNAME-aware client goes, synthesized CNAME or not. */
	for (unsigned i = 1; i < chain.n; i++) {
		if (!chain.by_dname[i])
			continue;
		policy_decide(s->policy, chain.name[i], chain.len[i], d);
		if (d->verdict == VERDICT_DENY || d->verdict == VERDICT_AUDIT) {
			memcpy(target, chain.name[i], chain.len[i]);
			return CHAIN_DENIED;
		}
	}
	if (wire_name_read(a->msg, a->len, &pos, NULL) < 0)
		return CHAIN_UNREADABLE;
	pos += 4;
	for (unsigned i = 0; i < total; i++) {
		if (wire_rr_next(a->msg, a->len, &pos, &rr) < 0)
			return CHAIN_UNREADABLE;
		if (!wire_type_has_target(rr.type))
			continue;
		int n = read_target(a->msg, a->len, &rr, target);
		if (n < 0)
			return CHAIN_UNREADABLE;
		if (n == 0)
			continue;
		policy_decide(s->policy, target, (size_t)n, d);
		/* Audit mode reports such an answer too, and does not cache it,
		 * so that each question for it is counted. */
		if (d->verdict == VERDICT_DENY || d->verdict == VERDICT_AUDIT)
			return CHAIN_DENIED;
	}
	return CHAIN_CLEAN;
}
