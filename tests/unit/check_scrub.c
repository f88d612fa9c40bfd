/* The answer scrubber: what stays of a hostile upstream answer, in which
 * section, and that a rebuilt message still reads as the client will read
 * it.  Messages are written with ldns, which compresses names, so the
 * rebuild's pointers are tested too. */
#include "autoconf.h"

#include <stdlib.h>
#include <string.h>

#include <ldns/ldns.h>

#include "check_suites.h"
#include "config.h"
#include "policy.h"
#include "scrub.h"
#include "wire.h"

static char err[1024];

static struct policy *build(const char *mode, struct config **cfgp)
{
	char conf[1024];
	snprintf(conf, sizeof(conf),
		 "upstreams = [ \"192.0.2.1\" ];\n"
		 "mode = \"%s\";\n"
		 "allow = [ \"contoso.azurecr.io\", \"_https._tcp.svc.example\", \"mail.example\" ];\n"
		 "deny = [ \"*.blob.core.windows.net\" ];\n", mode);
	char *path = unit_tmpfile("scrub.conf", conf);
	struct config *cfg = config_load(path, err, sizeof(err));
	free(path);
	ck_assert_msg(cfg != NULL, "%s", err);
	struct policy *p = policy_new(cfg, NULL, err, sizeof(err));
	ck_assert_msg(p != NULL, "%s", err);
	*cfgp = cfg;
	return p;
}

static void push(ldns_pkt *pkt, ldns_pkt_section sec, const char *const *rrs)
{
	for (; rrs && *rrs; rrs++) {
		ldns_rr *rr;
		ck_assert_msg(ldns_rr_new_frm_str(&rr, *rrs, 300, NULL, NULL) == LDNS_STATUS_OK, "%s", *rrs);
		ldns_pkt_push_rr(pkt, sec, rr);
	}
}

/** A reply to qname/qtype with these records, in wire form (names compressed). */
static size_t reply(uint8_t *out, const char *qname, ldns_rr_type qtype, ldns_pkt_rcode rcode,
		    const char *const *an, const char *const *ns, const char *const *ar)
{
	ldns_pkt *pkt = NULL;
	uint8_t *wire;
	size_t len;

	ck_assert(ldns_pkt_query_new_frm_str(&pkt, qname, qtype, LDNS_RR_CLASS_IN, LDNS_RD) ==
		  LDNS_STATUS_OK);
	ldns_pkt_set_qr(pkt, true);
	ldns_pkt_set_rcode(pkt, (uint8_t)rcode);
	push(pkt, LDNS_SECTION_ANSWER, an);
	push(pkt, LDNS_SECTION_AUTHORITY, ns);
	push(pkt, LDNS_SECTION_ADDITIONAL, ar);
	ck_assert(ldns_pkt2wire(&wire, pkt, &len) == LDNS_STATUS_OK);
	memcpy(out, wire, len);
	free(wire);
	ldns_pkt_free(pkt);
	return len;
}

/** Parse a scrubbed message back; asserts that it reads whole. */
static ldns_pkt *parse(const uint8_t *msg, size_t len)
{
	ldns_pkt *pkt = NULL;

	ck_assert_msg(ldns_wire2pkt(&pkt, msg, len) == LDNS_STATUS_OK, "rebuilt message does not parse");
	return pkt;
}

/** @return true when section holds a record of that owner (text with the dot) and type. */
static bool holds(const ldns_pkt *pkt, ldns_pkt_section sec, const char *owner, ldns_rr_type type)
{
	ldns_rr_list *l = ldns_pkt_get_section_clone(pkt, sec);
	bool found = false;

	for (size_t i = 0; l && i < ldns_rr_list_rr_count(l); i++) {
		ldns_rr *rr = ldns_rr_list_rr(l, i);
		char *o = ldns_rdf2str(ldns_rr_owner(rr));
		if (ldns_rr_get_type(rr) == type && strcasecmp(o, owner) == 0)
			found = true;
		free(o);
	}
	ldns_rr_list_deep_free(l);
	return found;
}

static uint8_t in[65535], out[65535];

START_TEST(clean_answer_left_alone)
{
	struct config *cfg;
	struct policy *p = build("allowlist", &cfg);
	const char *an[] = {
		"contoso.azurecr.io. CNAME contoso.privatelink.azurecr.io.",
		"contoso.privatelink.azurecr.io. CNAME eus.trafficmanager.net.",
		"eus.trafficmanager.net. CNAME eus.cloudapp.azure.com.",
		"eus.cloudapp.azure.com. A 20.62.128.1", NULL };
	const char *ns[] = { "azure.com. NS ns1.azure.com.", NULL };
	const char *ar[] = { "ns1.azure.com. A 192.0.2.53", NULL };
	size_t len = reply(in, "contoso.azurecr.io.", LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR, an, NULL, NULL);
	size_t n;
	struct scrub_result r;

	/* Azure's chain runs through names allowlist mode denies: all kept. */
	ck_assert_int_eq(scrub_answer(p, in, len, out, sizeof(out), &n, &r), SCRUB_CLEAN);
	/* An NS for a zone above the chain stays; its glue for a name that
	 * allowlist mode denies goes. */
	len = reply(in, "contoso.azurecr.io.", LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR, an, ns, ar);
	ck_assert_int_eq(scrub_answer(p, in, len, out, sizeof(out), &n, &r), SCRUB_REWRITTEN);
	ck_assert_int_eq(r.removed[0] + r.removed[1], 0);
	ck_assert_int_eq(r.removed[2], 1);
	ldns_pkt *pkt = parse(out, n);
	ck_assert_int_eq(ldns_pkt_ancount(pkt), 4);
	ck_assert(holds(pkt, LDNS_SECTION_ANSWER, "eus.cloudapp.azure.com.", LDNS_RR_TYPE_A));
	ck_assert(holds(pkt, LDNS_SECTION_AUTHORITY, "azure.com.", LDNS_RR_TYPE_NS));
	ldns_pkt_free(pkt);
	policy_free(p);
	config_free(cfg);
}
END_TEST

START_TEST(answer_section_keeps_only_the_chain)
{
	struct config *cfg;
	struct policy *p = build("allowlist", &cfg);
	const char *an[] = {
		"contoso.azurecr.io. CNAME eus.trafficmanager.net.",
		"victim.blob.core.windows.net. A 20.60.0.9",
		"eus.trafficmanager.net. A 20.62.128.1",
		"unrelated.example. A 198.51.100.1",
		"eus.trafficmanager.net. TXT \"wrong type\"", NULL };
	const char *ns[] = {
		"blob.core.windows.net. NS ns1.victim.blob.core.windows.net.",
		"attacker.example. NS ns.attacker.example.", NULL };
	const char *ar[] = {
		"ns1.victim.blob.core.windows.net. A 20.60.0.10",
		"ns.attacker.example. A 198.51.100.2",
		"victim.blob.core.windows.net. A 20.60.0.9", NULL };
	size_t len = reply(in, "Contoso.AzureCR.io.", LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR, an, ns, ar);
	size_t n;
	struct scrub_result r;

	ck_assert_int_eq(scrub_answer(p, in, len, out, sizeof(out), &n, &r), SCRUB_REWRITTEN);
	ck_assert_int_eq(r.removed[0], 3);
	ck_assert_int_eq(r.removed[1], 2);
	ck_assert_int_eq(r.removed[2], 3);
	ldns_pkt *pkt = parse(out, n);
	ck_assert_int_eq(ldns_pkt_ancount(pkt), 2);
	ck_assert_int_eq(ldns_pkt_nscount(pkt), 0);
	ck_assert_int_eq(ldns_pkt_arcount(pkt), 0);
	ck_assert(holds(pkt, LDNS_SECTION_ANSWER, "contoso.azurecr.io.", LDNS_RR_TYPE_CNAME));
	ck_assert(holds(pkt, LDNS_SECTION_ANSWER, "eus.trafficmanager.net.", LDNS_RR_TYPE_A));
	/* The question is as the upstream spelled it, uncompressed at 12. */
	ck_assert(memcmp(out + WIRE_HDR, "\7Contoso\7AzureCR\2io", 19) == 0);
	ck_assert_int_eq(ldns_rr_ttl(ldns_rr_list_rr(ldns_pkt_answer(pkt), 1)), 300);
	ldns_pkt_free(pkt);
	policy_free(p);
	config_free(cfg);
}
END_TEST

START_TEST(negative_answer_keeps_its_soa)
{
	struct config *cfg;
	struct policy *p = build("allowlist", &cfg);
	const char *ns[] = {
		"azurecr.io. SOA ns1.azure.com. hostmaster.azure.com. 1 3600 600 86400 60",
		"blob.core.windows.net. SOA ns.victim.blob.core.windows.net. h.example. 1 2 3 4 5",
		"example. SOA ns.example. h.example. 1 2 3 4 5", NULL };
	size_t len = reply(in, "contoso.azurecr.io.", LDNS_RR_TYPE_AAAA, LDNS_RCODE_NOERROR, NULL, ns, NULL);
	size_t n;
	struct scrub_result r;

	ck_assert_int_eq(scrub_answer(p, in, len, out, sizeof(out), &n, &r), SCRUB_REWRITTEN);
	ck_assert_int_eq(r.removed[1], 2);
	ldns_pkt *pkt = parse(out, n);
	ck_assert(holds(pkt, LDNS_SECTION_AUTHORITY, "azurecr.io.", LDNS_RR_TYPE_SOA));
	ck_assert_int_eq(ldns_pkt_nscount(pkt), 1);
	/* The SOA's RDATA names were written out again: they still read. */
	ldns_rr *soa = ldns_rr_list_rr(ldns_pkt_authority(pkt), 0);
	char *mname = ldns_rdf2str(ldns_rr_rdf(soa, 0));
	ck_assert_str_eq(mname, "ns1.azure.com.");
	free(mname);
	ldns_pkt_free(pkt);
	policy_free(p);
	config_free(cfg);
}
END_TEST

START_TEST(additional_only_for_pointed_names)
{
	struct config *cfg;
	struct policy *p = build("filter", &cfg);
	const char *an[] = {
		"_https._tcp.svc.example. SRV 0 0 443 web.svc.example.",
		"_https._tcp.svc.example. SRV 0 0 443 victim.blob.core.windows.net.", NULL };
	const char *ar[] = {
		"web.svc.example. A 192.0.2.80",
		"web.svc.example. AAAA 2001:db8::80",
		"web.svc.example. TXT \"not an address\"",
		"victim.blob.core.windows.net. A 20.60.0.9",
		"other.example. A 192.0.2.81", NULL };
	size_t len = reply(in, "_https._tcp.svc.example.", LDNS_RR_TYPE_SRV, LDNS_RCODE_NOERROR,
			   an, NULL, ar);
	size_t n;
	struct scrub_result r;

	ck_assert_int_eq(scrub_answer(p, in, len, out, sizeof(out), &n, &r), SCRUB_REWRITTEN);
	ck_assert_int_eq(r.removed[0], 0);
	ck_assert_int_eq(r.removed[2], 3);
	ldns_pkt *pkt = parse(out, n);
	ck_assert(holds(pkt, LDNS_SECTION_ADDITIONAL, "web.svc.example.", LDNS_RR_TYPE_A));
	ck_assert(holds(pkt, LDNS_SECTION_ADDITIONAL, "web.svc.example.", LDNS_RR_TYPE_AAAA));
	ck_assert(!holds(pkt, LDNS_SECTION_ADDITIONAL, "victim.blob.core.windows.net.", LDNS_RR_TYPE_A));
	ldns_pkt_free(pkt);
	policy_free(p);
	config_free(cfg);
}
END_TEST

START_TEST(dname_rewrites_the_question)
{
	struct config *cfg;
	struct policy *p = build("filter", &cfg);
	const char *an[] = {
		"dn.example.com. DNAME core.windows.net.",
		"acct.blob.core.windows.net. A 20.60.0.5",
		"elsewhere.example. DNAME nowhere.example.", NULL };
	size_t len = reply(in, "acct.blob.dn.example.com.", LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR,
			   an, NULL, NULL);
	struct scrub_chain c;
	uint8_t want[256];
	size_t n;
	struct scrub_result r;

	ck_assert_int_eq(scrub_chain_walk(in, len, &c), 0);
	ck_assert_uint_eq(c.n, 2);
	int wl = wire_name_from_str("acct.blob.core.windows.net", want);
	ck_assert_int_eq(c.len[1], wl);
	ck_assert(memcmp(c.name[1], want, (size_t)wl) == 0);
	ck_assert(c.by_dname[1]);
	ck_assert_int_eq(scrub_chain_invalid(&c), -1);
	/* The DNAME and the rewritten name's record stay; the other DNAME goes. */
	ck_assert_int_eq(scrub_answer(p, in, len, out, sizeof(out), &n, &r), SCRUB_REWRITTEN);
	ck_assert_int_eq(r.removed[0], 1);
	ldns_pkt *pkt = parse(out, n);
	ck_assert(holds(pkt, LDNS_SECTION_ANSWER, "dn.example.com.", LDNS_RR_TYPE_DNAME));
	ck_assert(holds(pkt, LDNS_SECTION_ANSWER, "acct.blob.core.windows.net.", LDNS_RR_TYPE_A));
	ldns_pkt_free(pkt);
	policy_free(p);
	config_free(cfg);
}
END_TEST

START_TEST(chain_into_invalid)
{
	const char *an[] = {
		"blocked.example. CNAME blockpolicy.azuredns.invalid.", NULL };
	size_t len = reply(in, "blocked.example.", LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR, an, NULL, NULL);
	struct scrub_chain c;

	ck_assert_int_eq(scrub_chain_walk(in, len, &c), 0);
	ck_assert_int_eq(scrub_chain_invalid(&c), 1);
	/* The question itself is not a chain end. */
	len = reply(in, "x.invalid.", LDNS_RR_TYPE_A, LDNS_RCODE_NXDOMAIN, NULL, NULL, NULL);
	ck_assert_int_eq(scrub_chain_walk(in, len, &c), 0);
	ck_assert_int_eq(scrub_chain_invalid(&c), -1);
}
END_TEST

START_TEST(rdata_targets)
{
	static const struct { const char *rr; const char *target; } cases[] = {
		{ "a.example. MX 10 mail.example.", "mail.example" },
		{ "a.example. MX 0 .", NULL },
		{ "_s._tcp.a.example. SRV 1 2 443 host.example.", "host.example" },
		{ "_s._tcp.a.example. SRV 0 0 0 .", NULL },
		{ "a.example. NAPTR 100 10 \"S\" \"SIP+D2T\" \"\" _sip._tcp.example.", "_sip._tcp.example" },
		{ "a.example. NAPTR 100 10 \"U\" \"E2U+sip\" \"!^.*$!sip:x@example!\" .", NULL },
		{ "a.example. HTTPS 1 . alpn=h2", NULL },
		{ "a.example. HTTPS 1 cdn.example. alpn=h2", "cdn.example" },
		{ "a.example. A 192.0.2.1", NULL },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *an[] = { cases[i].rr, NULL };
		size_t len = reply(in, "a.example.", LDNS_RR_TYPE_ANY, LDNS_RCODE_NOERROR, an, NULL, NULL);
		size_t pos = WIRE_HDR;
		struct wire_rr rr;
		uint8_t t[256], want[256];
		ck_assert_int_ge(wire_name_read(in, len, &pos, NULL), 0);
		pos += 4;
		ck_assert_int_eq(wire_rr_next(in, len, &pos, &rr), 0);
		int n = scrub_rdata_target(in, len, &rr, t);
		if (!cases[i].target) {
			ck_assert_msg(n == 0, "%s: %d", cases[i].rr, n);
			continue;
		}
		int wl = wire_name_from_str(cases[i].target, want);
		ck_assert_msg(n == wl && memcmp(t, want, (size_t)n) == 0, "%s", cases[i].rr);
		ck_assert(wire_type_has_target(rr.type));
	}
}
END_TEST

START_TEST(truncated_and_garbage)
{
	struct config *cfg;
	struct policy *p = build("filter", &cfg);
	const char *an[] = { "a.example. A 192.0.2.1", "b.example. A 192.0.2.2", NULL };
	size_t len = reply(in, "a.example.", LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR, an, NULL, NULL);
	size_t n;

	for (size_t cut = 0; cut < len; cut++)
		ck_assert_int_eq(scrub_answer(p, in, cut, out, sizeof(out), &n, NULL), SCRUB_MALFORMED);
	/* No room for the rebuilt message: refused, never overrun. */
	ck_assert_int_eq(scrub_answer(p, in, len, out, 20, &n, NULL), SCRUB_MALFORMED);
	ck_assert_int_eq(scrub_answer(p, in, len, out, sizeof(out), &n, NULL), SCRUB_REWRITTEN);
	policy_free(p);
	config_free(cfg);
}
END_TEST

START_TEST(undecodable_kept_record)
{
	struct config *cfg;
	struct policy *p = build("allowlist", &cfg);
	/* contoso.azurecr.io A: a CNAME whose target is a forward pointer
	 * (to the next owner), a storage address, and a stray A. */
	static const uint8_t hdr[] = { 0x12, 0x34, 0x81, 0x80, 0, 1, 0, 3, 0, 0, 0, 0 };
	static const uint8_t qname[] = "\7contoso\7azurecr\2io";
	static const uint8_t target[] = "\6victim\4blob\4core\7windows\3net";
	uint8_t m[512];
	size_t len = 0, n;

	memcpy(m, hdr, sizeof(hdr));
	len = sizeof(hdr);
	memcpy(m + len, qname, sizeof(qname));
	len += sizeof(qname);
	memcpy(m + len, "\0\1\0\1", 4);
	len += 4;
	size_t next = len + 2 + 10 + 2;   /* where the next record's owner starts */
	uint8_t cname[] = { 0xc0, 12, 0, 5, 0, 1, 0, 0, 1, 44, 0, 2,
			    (uint8_t)(0xc0 | (next >> 8)), (uint8_t)next };
	memcpy(m + len, cname, sizeof(cname));
	len += sizeof(cname);
	memcpy(m + len, target, sizeof(target));
	len += sizeof(target);
	uint8_t a[] = { 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 20, 60, 0, 9 };
	memcpy(m + len, a, sizeof(a));
	len += sizeof(a);
	uint8_t stray[] = { 0xc0, 12, 0, 16, 0, 1, 0, 0, 1, 44, 0, 2, 1, 'x' };
	memcpy(m + len, stray, sizeof(stray));
	len += sizeof(stray);
	/* The CNAME stays (its owner is the question), but cannot be
	 * rebuilt: the answer must be refused, never passed unscrubbed. */
	ck_assert_int_eq(scrub_answer(p, m, len, out, sizeof(out), &n, NULL), SCRUB_UNREADABLE);
	policy_free(p);
	config_free(cfg);
}
END_TEST

Suite *scrub_suite(void)
{
	Suite *s = suite_create("scrub");
	TCase *tc = tcase_create("scrub");

	tcase_add_test(tc, clean_answer_left_alone);
	tcase_add_test(tc, answer_section_keeps_only_the_chain);
	tcase_add_test(tc, negative_answer_keeps_its_soa);
	tcase_add_test(tc, additional_only_for_pointed_names);
	tcase_add_test(tc, dname_rewrites_the_question);
	tcase_add_test(tc, chain_into_invalid);
	tcase_add_test(tc, rdata_targets);
	tcase_add_test(tc, truncated_and_garbage);
	tcase_add_test(tc, undecodable_kept_record);
	suite_add_tcase(s, tc);
	return s;
}
