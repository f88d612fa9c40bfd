/* The query path without sockets: query_handle() with a fake listener that
 * records the answers, and a fake upstream whose outcome the test hands
 * back through query's own callback (as unbound's testcode/fake_event.c
 * stands in for its network layer).  Time passes without sleeping: an
 * answer cached "ten seconds ago" is stale now, and UPSTREAM_LATE is the
 * 1.8 s patience running out.
 *
 * The fakes replace listener.c's and upstream.c's symbols at link time:
 * this test binary must not pull listener.o or upstream.o from the library. */
#include "autoconf.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_suites.h"
#include "config.h"
#include "failcache.h"
#include "listener.h"
#include "policy.h"
#include "query.h"
#include "server.h"
#include "upstream.h"
#include "wire.h"

/* ---- the fake listener: every answer recorded ---- */

#define SENT_MAX 8

static struct {
	uint8_t msg[SENT_MAX][4096];
	size_t len[SENT_MAX];
	unsigned n;
	int held;       /* listener_hold() minus listener_release() */
} sent;

void listener_reply(const struct reply_to *rt, const uint8_t *msg, size_t len)
{
	if (!rt->udp && !rt->tcp)
		return;   /* a prefetch or refresh: nobody to answer, as in listener.c */
	ck_assert_uint_lt(sent.n, SENT_MAX);
	ck_assert_uint_le(len, sizeof(sent.msg[0]));
	memcpy(sent.msg[sent.n], msg, len);
	sent.len[sent.n++] = len;
}

size_t listener_max_reply(const struct reply_to *rt, const struct wire_query *q)
{
	(void)q;
	return rt->udp ? WIRE_EDNS_SIZE : 65535;
}

void listener_hold(struct reply_to *rt)
{
	(void)rt;
	sent.held++;
}

void listener_release(struct reply_to *rt)
{
	(void)rt;
	sent.held--;
}

void listener_flush(void)
{
}

/* ---- the fake upstream: one question at a time, its outcome told by the test ---- */

static struct {
	unsigned asked;          /* upstream_resolve() calls */
	bool refuse;             /* answer NULL: the question cannot be asked */
	bool late;               /* the question joined has passed its patience */
	upstream_done_fn done;
	void *arg;
	void *waiters;
	uint8_t name[WIRE_NAME_MAX + 1];
	struct cache_key key;
} up;

void **upstream_resolve(struct upstreams *u, const struct cache_key *key, upstream_done_fn done,
			void *arg, bool *late)
{
	(void)u;
	up.asked++;
	*late = up.late;
	if (up.refuse)
		return NULL;
	if (!up.done) {
		up.done = done;
		up.arg = arg;
		memcpy(up.name, key->name, key->name_len);
		up.key = *key;
		up.key.name = up.name;
	}
	return &up.waiters;
}

/** Why the fake's questions fail: the upstream said so. */
static const struct upstream_failure refused_why = { 22, "upstream 192.0.2.1#53 answered REFUSED" };

/** Hand the question back as upstream would. */
static void outcome(enum upstream_outcome o, const struct cache_answer *a)
{
	ck_assert_ptr_nonnull(up.done);
	up.done(up.arg, o, &up.key, a, o == UPSTREAM_FAILED || o == UPSTREAM_ABANDONED ? &refused_why : NULL,
		&up.waiters);
	if (o != UPSTREAM_LATE) {
		ck_assert_ptr_null(up.waiters);   /* every client was taken */
		up.done = NULL;
	}
}

/* ---- the daemon's state, built from a configuration ---- */

static struct server srv;
static struct listener client_side;   /* only its address: a UDP client */
static char err[1024];

static void setup(void)
{
	char *path = unit_tmpfile("query.conf",
		"upstreams = [ \"192.0.2.1\" ];\n"
		"mode = \"filter\";\n"
		"access = [ \"127.0.0.0/8\" ];\n"
		"allow = [ \"ok.example.com\" ];\n"
		"deny = [ \"bad.example.com\", \"*.blob.core.windows.net\" ];\n"
		"local = ( { name = \"local.example.com\"; addresses = [ \"10.20.0.5\" ]; ttl = 120; } );\n"
		"log = { queries = \"none\"; };\n");

	memset(&srv, 0, sizeof(srv));
	memset(&sent, 0, sizeof(sent));
	memset(&up, 0, sizeof(up));
	srv.cfg = config_load(path, err, sizeof(err));
	free(path);
	ck_assert_msg(srv.cfg != NULL, "%s", err);
	srv.policy = policy_new(srv.cfg, NULL, err, sizeof(err));
	ck_assert_msg(srv.policy != NULL, "%s", err);
	srv.policy_gen = 1;
	srv.cache = cache_new(1 << 20);
	srv.fails = failcache_new(64, srv.cfg->stale_recheck * 1000u);
	srv.ttl = (struct cache_ttl){ srv.cfg->min_ttl, srv.cfg->max_ttl, srv.cfg->negative_ttl,
				      srv.cfg->stale_ttl };
}

static void teardown(void)
{
	cache_free(srv.cache);
	failcache_free(srv.fails);
	policy_free(srv.policy);
	config_free(srv.cfg);
}

/* ---- messages ---- */

/** A client's query for name (type A unless qtype), without EDNS. */
static size_t query_wire(uint8_t *out, const char *name, uint16_t qtype, uint16_t id)
{
	int n = wire_name_from_str(name, out + WIRE_HDR);

	ck_assert_int_gt(n, 0);
	memset(out, 0, WIRE_HDR);
	wire_put16(out, id);
	wire_put16(out + 2, WIRE_RD);
	wire_put16(out + 4, 1);
	wire_put16(out + WIRE_HDR + n, qtype);
	wire_put16(out + WIRE_HDR + n + 2, LDNS_RR_CLASS_IN);
	return WIRE_HDR + (size_t)n + 4;
}

/** Append a record: owner (text), type, TTL, rdata. */
static size_t put_rr(uint8_t *out, size_t len, const char *owner, uint16_t type, uint32_t ttl,
		     const uint8_t *rdata, uint16_t rdlen)
{
	int n = wire_name_from_str(owner, out + len);

	ck_assert_int_gt(n, 0);
	len += (size_t)n;
	wire_put16(out + len, type);
	wire_put16(out + len + 2, LDNS_RR_CLASS_IN);
	wire_put32(out + len + 4, ttl);
	wire_put16(out + len + 8, rdlen);
	memcpy(out + len + 10, rdata, rdlen);
	wire_put16(out + 6, (uint16_t)(wire_get16(out + 6) + 1));
	return len + 10 + rdlen;
}

/**
 * Upstream's reply to name/A, prepared into srv.answer as upstream does:
 * through cname (when set) to the address 192.0.2.<last>, with ttl.
 */
static const struct cache_answer *reply(const char *name, const char *cname, uint8_t last,
					uint32_t ttl)
{
	static uint8_t buf[1024];
	uint8_t a[4] = { 192, 0, 2, last }, target[WIRE_NAME_MAX + 1];
	size_t len = query_wire(buf, name, LDNS_RR_TYPE_A, 0);

	wire_put16(buf + 2, WIRE_QR | WIRE_RD | WIRE_RA);
	if (cname) {
		int n = wire_name_from_str(cname, target);
		ck_assert_int_gt(n, 0);
		len = put_rr(buf, len, name, LDNS_RR_TYPE_CNAME, ttl, target, (uint16_t)n);
	}
	len = put_rr(buf, len, cname ? cname : name, LDNS_RR_TYPE_A, ttl, a, 4);
	ck_assert_int_eq(cache_prepare(buf, len, &srv.ttl, &srv.answer), 0);
	return &srv.answer;
}

/** Cache upstream's reply for name as it stood age_ms ago. */
static void cached(const char *name, uint8_t last, uint32_t ttl, uint64_t age_ms)
{
	uint8_t wire[WIRE_NAME_MAX + 1];
	int n = wire_name_from_str(name, wire);
	struct cache_key key = { wire, (uint16_t)n, LDNS_RR_TYPE_A, LDNS_RR_CLASS_IN, 0 };

	reply(name, NULL, last, ttl);
	cache_insert(srv.cache, &key, &srv.answer, server_now_ms() - age_ms, srv.ttl.stale_ttl,
		     srv.policy_gen);
}

/** A UDP query from 127.0.0.1 to query_handle(): type A, with RD and EDNS as told. */
static void ask_with(const char *name, uint16_t id, bool rd, bool edns)
{
	uint8_t msg[512];
	size_t len = query_wire(msg, name, LDNS_RR_TYPE_A, id);
	if (!rd)
		wire_put16(msg + 2, 0);
	if (edns)
		len = wire_opt_append(msg, len, sizeof(msg), 0, false, 0, NULL);
	struct reply_to rt = { .udp = &client_side, .peer_len = sizeof(struct sockaddr_in) };
	struct sockaddr_in *sin = (struct sockaddr_in *)&rt.peer;

	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	query_handle(&srv, msg, len, &rt);
}

/** A UDP query for name/A from 127.0.0.1, with RD, without EDNS. */
static void ask(const char *name, uint16_t id)
{
	ask_with(name, id, true, false);
}

/**
 * The Extended DNS Error of the i-th answer: its code (-1 none), its text
 * copied into text (of 128 bytes).
 */
static int ede_of(unsigned i, char *text)
{
	const uint8_t *m = sent.msg[i];
	size_t len = sent.len[i], pos = WIRE_HDR;
	unsigned total = (unsigned)wire_get16(m + 6) + wire_get16(m + 8) + wire_get16(m + 10);
	struct wire_rr rr;

	text[0] = 0;
	ck_assert_int_ge(wire_name_read(m, len, &pos, NULL), 0);
	pos += 4;
	for (unsigned k = 0; k < total; k++) {
		ck_assert_int_ge(wire_rr_next(m, len, &pos, &rr), 0);
		if (rr.type != LDNS_RR_TYPE_OPT)
			continue;
		for (size_t p = rr.rdata; p + 4 <= rr.rdata + rr.rdlen;) {
			uint16_t code = wire_get16(m + p), olen = wire_get16(m + p + 2);
			if (code == 15 && olen >= 2) {
				size_t n = olen - 2u < 127 ? olen - 2u : 127;
				memcpy(text, m + p + 6, n);
				text[n] = 0;
				return wire_get16(m + p + 4);
			}
			p += 4u + olen;
		}
	}
	return -1;
}

/** The i-th answer sent: its ID and RCODE, the TTL and address of its last A record (0 none). */
struct seen {
	uint16_t id, rcode, ancount;
	uint32_t ttl;
	uint8_t last;     /* 192.0.2.<last> or 10.20.0.<last> */
};

static struct seen answer(unsigned i)
{
	const uint8_t *m = sent.msg[i];
	size_t len = sent.len[i], pos = WIRE_HDR;
	struct seen s = { wire_get16(m), WIRE_RCODE(wire_get16(m + 2)), wire_get16(m + 6), 0, 0 };
	struct wire_rr rr;

	ck_assert_uint_lt(i, sent.n);
	ck_assert_int_ge(wire_name_read(m, len, &pos, NULL), 0);
	pos += 4;
	for (unsigned k = 0; k < s.ancount; k++) {
		ck_assert_int_ge(wire_rr_next(m, len, &pos, &rr), 0);
		if (rr.type == LDNS_RR_TYPE_A && rr.rdlen == 4) {
			s.ttl = rr.ttl;
			s.last = m[rr.rdata + 3];
		}
	}
	return s;
}

/* ---- the tests ---- */

START_TEST(hit_needs_no_upstream)
{
	cached("ok.example.com", 7, 300, 0);
	ask("ok.example.com", 11);
	ck_assert_uint_eq(sent.n, 1);
	struct seen a = answer(0);
	ck_assert_uint_eq(a.id, 11);
	ck_assert_uint_eq(a.rcode, LDNS_RCODE_NOERROR);
	ck_assert_uint_eq(a.last, 7);
	ck_assert_uint_eq(up.asked, 0);
}
END_TEST

START_TEST(miss_then_answer)
{
	ask("ok.example.com", 12);
	ask("ok.example.com", 13);   /* joins the same question */
	ck_assert_uint_eq(sent.n, 0);
	ck_assert_uint_eq(up.asked, 2);
	ck_assert_int_eq(sent.held, 2);
	outcome(UPSTREAM_ANSWER, reply("ok.example.com", NULL, 8, 300));
	ck_assert_uint_eq(sent.n, 2);
	ck_assert_int_eq(sent.held, 0);
	uint16_t ids = 0;
	for (unsigned i = 0; i < 2; i++) {
		struct seen a = answer(i);
		ck_assert_uint_eq(a.rcode, LDNS_RCODE_NOERROR);
		ck_assert_uint_eq(a.last, 8);
		ck_assert_uint_eq(a.ttl, 300);
		ids ^= a.id;
	}
	ck_assert_uint_eq(ids, 12 ^ 13);
	ask("ok.example.com", 14);   /* cached now */
	ck_assert_uint_eq(sent.n, 3);
	ck_assert_uint_eq(up.asked, 2);
}
END_TEST

START_TEST(miss_then_stale)
{
	cached("ok.example.com", 9, 1, 10000);   /* TTL 1, stored 10 s ago: stale */
	ask("ok.example.com", 15);
	ck_assert_uint_eq(sent.n, 0);
	ck_assert_uint_eq(up.asked, 1);
	outcome(UPSTREAM_LATE, NULL);
	ck_assert_uint_eq(sent.n, 1);
	struct seen a = answer(0);
	ck_assert_uint_eq(a.rcode, LDNS_RCODE_NOERROR);
	ck_assert_uint_eq(a.last, 9);
	ck_assert_uint_eq(a.ttl, CACHE_STALE_TTL);
	ck_assert_ptr_null(up.waiters);
	/* A client that joins the late question is answered from stale at once. */
	up.late = true;
	ask("ok.example.com", 16);
	ck_assert_uint_eq(sent.n, 2);
	ck_assert_uint_eq(answer(1).id, 16);
	ck_assert_ptr_null(up.waiters);
	outcome(UPSTREAM_FAILED, NULL);
	ck_assert_uint_eq(sent.n, 2);
	ck_assert_int_eq(sent.held, 0);
}
END_TEST

START_TEST(miss_then_fail)
{
	ask("ok.example.com", 17);
	outcome(UPSTREAM_LATE, NULL);   /* nothing stale: the client waits on */
	ck_assert_uint_eq(sent.n, 0);
	/* One who joins the late question waits too, beside the first: none is lost. */
	up.late = true;
	ask("ok.example.com", 18);
	ck_assert_uint_eq(sent.n, 0);
	outcome(UPSTREAM_FAILED, NULL);
	ck_assert_uint_eq(sent.n, 2);
	ck_assert_uint_eq(answer(0).rcode, LDNS_RCODE_SERVFAIL);
	ck_assert_uint_eq(answer(1).rcode, LDNS_RCODE_SERVFAIL);
	ck_assert_uint_eq(answer(0).id ^ answer(1).id, 17 ^ 18);
	ck_assert_int_eq(sent.held, 0);
}
END_TEST

START_TEST(no_question_possible)
{
	up.refuse = true;
	ask("ok.example.com", 19);
	ck_assert_uint_eq(sent.n, 1);
	ck_assert_uint_eq(answer(0).rcode, LDNS_RCODE_SERVFAIL);
	ck_assert_int_eq(sent.held, 0);
}
END_TEST

START_TEST(denied_never_asks)
{
	ask("bad.example.com", 20);
	ask("acct.blob.core.windows.net", 21);
	ck_assert_uint_eq(sent.n, 2);
	ck_assert_uint_eq(answer(0).rcode, LDNS_RCODE_NXDOMAIN);
	ck_assert_uint_eq(answer(1).rcode, LDNS_RCODE_NXDOMAIN);
	ck_assert_uint_eq(up.asked, 0);
}
END_TEST

START_TEST(local_answer)
{
	ask("local.example.com", 22);
	ck_assert_uint_eq(sent.n, 1);
	struct seen a = answer(0);
	ck_assert_uint_eq(a.rcode, LDNS_RCODE_NOERROR);
	ck_assert_uint_eq(a.ancount, 1);
	ck_assert_uint_eq(a.ttl, 120);
	ck_assert_uint_eq(sent.msg[0][sent.len[0] - 4], 10);   /* 10.20.0.5 */
	ck_assert_uint_eq(a.last, 5);
	ck_assert_uint_eq(up.asked, 0);
}
END_TEST

START_TEST(chain_to_denied_target)
{
	/* A name filter mode only passes, whose answer leads to a denied name:
	 * denied to the client, and not cached, so the next one is checked again. */
	ask("pass.example.org", 23);
	outcome(UPSTREAM_ANSWER, reply("pass.example.org", "acct.blob.core.windows.net", 30, 300));
	ck_assert_uint_eq(sent.n, 1);
	ck_assert_uint_eq(answer(0).rcode, LDNS_RCODE_NXDOMAIN);
	ask("pass.example.org", 24);
	ck_assert_uint_eq(up.asked, 2);
	outcome(UPSTREAM_FAILED, NULL);
	/* A name a rule allows is trusted whole: answered and cached. */
	ask("ok.example.com", 25);
	outcome(UPSTREAM_ANSWER, reply("ok.example.com", "acct.blob.core.windows.net", 31, 300));
	ck_assert_uint_eq(sent.n, 3);
	struct seen a = answer(2);
	ck_assert_uint_eq(a.rcode, LDNS_RCODE_NOERROR);
	ck_assert_uint_eq(a.last, 31);
	ask("ok.example.com", 26);
	ck_assert_uint_eq(up.asked, 3);
	ck_assert_uint_eq(answer(3).last, 31);
}
END_TEST

START_TEST(norec_from_cache_only)
{
	/* RD=0: a cached name is answered from the cache, RD clear in the reply. */
	cached("ok.example.com", 40, 300, 0);
	ask_with("ok.example.com", 30, false, false);
	ck_assert_uint_eq(sent.n, 1);
	struct seen a = answer(0);
	ck_assert_uint_eq(a.rcode, LDNS_RCODE_NOERROR);
	ck_assert_uint_eq(a.last, 40);
	ck_assert_uint_eq(wire_get16(sent.msg[0] + 2) & WIRE_RD, 0);
	ck_assert_uint_ne(wire_get16(sent.msg[0] + 2) & WIRE_RA, 0);
	/* Not cached: REFUSED with EDE 20, as unbound answers, and nothing asked. */
	char text[128];
	ask_with("other.example.com", 31, false, true);
	ck_assert_uint_eq(sent.n, 2);
	ck_assert_uint_eq(answer(1).rcode, LDNS_RCODE_REFUSED);
	ck_assert_int_eq(ede_of(1, text), 20);
	ck_assert_uint_ne(wire_get16(sent.msg[1] + 2) & WIRE_RA, 0);
	/* Stale is no answer for RD=0 either: it would need a refresh. */
	cached("stale.example.com", 41, 1, 10000);
	ask_with("stale.example.com", 32, false, false);
	ck_assert_uint_eq(answer(2).rcode, LDNS_RCODE_REFUSED);
	ck_assert_uint_eq(up.asked, 0);
	ck_assert_int_eq(sent.held, 0);
}
END_TEST

START_TEST(failure_says_what_upstream_said)
{
	char text[128];

	ask_with("ok.example.com", 33, true, true);
	outcome(UPSTREAM_FAILED, NULL);
	ck_assert_uint_eq(sent.n, 1);
	ck_assert_uint_eq(answer(0).rcode, LDNS_RCODE_SERVFAIL);
	ck_assert_int_eq(ede_of(0, text), 22);
	ck_assert_str_eq(text, "upstream 192.0.2.1#53 answered REFUSED");
}
END_TEST

START_TEST(failure_remembered)
{
	char text[128];

	ask_with("ok.example.com", 34, true, true);
	outcome(UPSTREAM_FAILED, NULL);
	ck_assert_uint_eq(up.asked, 1);
	/* Within the hold-down: SERVFAIL at once, with the reason, nothing asked. */
	ask_with("ok.example.com", 35, true, true);
	ck_assert_uint_eq(sent.n, 2);
	ck_assert_uint_eq(answer(1).rcode, LDNS_RCODE_SERVFAIL);
	ck_assert_uint_eq(answer(1).id, 35);
	ck_assert_int_eq(ede_of(1, text), 22);
	ck_assert_str_eq(text, "upstream 192.0.2.1#53 answered REFUSED");
	ck_assert_uint_eq(up.asked, 1);
	/* Another name, and another type of the same name, are asked as usual. */
	ask("pass.example.org", 36);
	ck_assert_uint_eq(up.asked, 2);
	outcome(UPSTREAM_ANSWER, reply("pass.example.org", NULL, 42, 300));
	ck_assert_uint_eq(answer(2).last, 42);
	uint8_t msg[512];
	size_t len = query_wire(msg, "ok.example.com", LDNS_RR_TYPE_AAAA, 37);
	struct reply_to rt = { .udp = &client_side, .peer_len = sizeof(struct sockaddr_in) };
	((struct sockaddr_in *)&rt.peer)->sin_family = AF_INET;
	((struct sockaddr_in *)&rt.peer)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	query_handle(&srv, msg, len, &rt);
	ck_assert_uint_eq(up.asked, 3);
	outcome(UPSTREAM_ABANDONED, NULL);
	/* The same question with DO is another question too. */
	ck_assert_int_eq(sent.held, 0);
	/* A flush forgets it: asked again. */
	failcache_flush(srv.fails, NULL, 0);
	ask("ok.example.com", 38);
	ck_assert_uint_eq(up.asked, 4);
	outcome(UPSTREAM_ANSWER, reply("ok.example.com", NULL, 43, 300));
	ck_assert_int_eq(sent.held, 0);
}
END_TEST

START_TEST(failed_refresh_serves_stale_at_once)
{
	uint8_t wire[WIRE_NAME_MAX + 1];
	int n = wire_name_from_str("ok.example.com", wire);
	struct cache_key key = { wire, (uint16_t)n, LDNS_RR_TYPE_A, LDNS_RR_CLASS_IN, 0 };

	cached("ok.example.com", 44, 1, 10000);
	/* A refresh failed 2 s ago: its 1 s hold-down is over, the 30 s recheck is not. */
	failcache_fail(srv.fails, &key, server_now_ms() - 2000, 22, "no upstream answered");
	ask("ok.example.com", 39);
	/* Stale at once, without waiting for the patience ... */
	ck_assert_uint_eq(sent.n, 1);
	ck_assert_uint_eq(answer(0).last, 44);
	ck_assert_uint_eq(answer(0).ttl, CACHE_STALE_TTL);
	/* ... while one refresh goes upstream, which the next client does not repeat. */
	ck_assert_uint_eq(up.asked, 1);
	ask("ok.example.com", 40);
	ck_assert_uint_eq(sent.n, 2);
	ck_assert_uint_eq(answer(1).last, 44);
	ck_assert_uint_eq(up.asked, 2);      /* joined the refresh in flight */
	outcome(UPSTREAM_ANSWER, reply("ok.example.com", NULL, 45, 300));
	ck_assert_uint_eq(sent.n, 2);        /* the refresh has no client of its own */
	ask("ok.example.com", 41);
	ck_assert_uint_eq(answer(2).last, 45);
	ck_assert_int_eq(sent.held, 0);
	/* Within the hold-down, stale goes at once and nothing is asked. */
	cached("ok.example.com", 46, 1, 10000);
	failcache_fail(srv.fails, &key, server_now_ms(), 22, "no upstream answered");
	ask("ok.example.com", 42);
	ck_assert_uint_eq(answer(3).last, 46);
	ck_assert_uint_eq(up.asked, 2);
}
END_TEST

Suite *query_suite(void)
{
	Suite *s = suite_create("query");
	TCase *t = tcase_create("answers");

	tcase_add_checked_fixture(t, setup, teardown);
	tcase_add_test(t, hit_needs_no_upstream);
	tcase_add_test(t, miss_then_answer);
	tcase_add_test(t, miss_then_stale);
	tcase_add_test(t, miss_then_fail);
	tcase_add_test(t, no_question_possible);
	tcase_add_test(t, denied_never_asks);
	tcase_add_test(t, local_answer);
	tcase_add_test(t, chain_to_denied_target);
	tcase_add_test(t, norec_from_cache_only);
	tcase_add_test(t, failure_says_what_upstream_said);
	tcase_add_test(t, failure_remembered);
	tcase_add_test(t, failed_refresh_serves_stale_at_once);
	suite_add_tcase(s, t);
	return s;
}
