/* nftables batching: the text of one transaction and the timeouts. */
#include "autoconf.h"

#include <arpa/inet.h>
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_suites.h"
#include "nft.h"
#include "wire.h"

static const struct cfg_nft cfg = { true, "inet", "acrdns", "allow4", "allow6", 300 };

START_TEST(timeouts)
{
	ck_assert_uint_eq(nft_timeout(300, 300), 600);
	ck_assert_uint_eq(nft_timeout(0, 300), 300);
	ck_assert_uint_eq(nft_timeout(0, 0), 1);             /* 0 would mean "no timeout" */
	ck_assert_uint_eq(nft_timeout(4294967295u, 300), 604800 + 300);  /* no wrap */
	ck_assert_uint_eq(nft_timeout(604801, 0), 604800);
}
END_TEST

START_TEST(batch_text)
{
	struct nft_item items[3] = {
		{ 4, { 10, 1, 2, 3 }, 600 },
		{ 6, { 0x20, 0x01, 0x0d, 0xb8, [15] = 1 }, 330 },
		{ 4, { 192, 0, 2, 7 }, 301 },
	};
	char buf[2048];
	size_t n = nft_batch_text(&cfg, items, 3, buf, sizeof(buf));

	ck_assert_uint_gt(n, 0);
	ck_assert_str_eq(buf,
		"add element inet acrdns allow4 { 10.1.2.3 timeout 600s, 192.0.2.7 timeout 301s }\n"
		"delete element inet acrdns allow4 { 10.1.2.3, 192.0.2.7 }\n"
		"add element inet acrdns allow4 { 10.1.2.3 timeout 600s, 192.0.2.7 timeout 301s }\n"
		"add element inet acrdns allow6 { 2001:db8::1 timeout 330s }\n"
		"delete element inet acrdns allow6 { 2001:db8::1 }\n"
		"add element inet acrdns allow6 { 2001:db8::1 timeout 330s }\n");
	ck_assert_uint_eq(n, strlen(buf));

	/* No set for a family: its addresses are left out. */
	struct cfg_nft only4 = cfg;
	only4.set6[0] = '\0';
	nft_batch_text(&only4, items, 3, buf, sizeof(buf));
	ck_assert_ptr_null(strstr(buf, "2001:db8::1"));

	/* Too small a buffer: nothing half-written is committed. */
	ck_assert_uint_eq(nft_batch_text(&cfg, items, 3, buf, 100), 0);

	/* Nothing queued: an empty transaction. */
	ck_assert_uint_eq(nft_batch_text(&cfg, items, 0, buf, sizeof(buf)), 0);
}
END_TEST

START_TEST(ruleset)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	struct cfg_nft c = { true, "ip", "egress", "registry", "", 60 };

	nft_print_ruleset(f, &c);
	fclose(f);
	ck_assert_ptr_nonnull(strstr(text, "table ip egress {"));
	ck_assert_ptr_nonnull(strstr(text, "set registry {\n\t\ttype ipv4_addr\n\t\tflags timeout"));
	ck_assert_ptr_nonnull(strstr(text, "tcp dport 443 ip daddr @registry accept"));
	ck_assert_ptr_null(strstr(text, "ip6"));
	ck_assert_ptr_nonnull(strstr(text, "tcp dport 443 counter drop"));
	free(text);
}
END_TEST

struct seen_addrs {
	int n;
	char text[8][48];
	uint32_t ttl[8];
};

static void collect(void *arg, int family, const uint8_t *addr, uint32_t ttl)
{
	struct seen_addrs *x = arg;

	if (x->n < 8) {
		inet_ntop(family == 4 ? AF_INET : AF_INET6, addr, x->text[x->n], sizeof(x->text[0]));
		x->ttl[x->n++] = ttl;
	}
}

/* Append an RR whose owner and target are uncompressed wire names. */
static size_t rr(uint8_t *m, size_t len, const char *owner, uint16_t type, uint32_t ttl,
		 const void *rdata, uint16_t rdlen)
{
	int n = wire_name_from_str(owner, m + len);
	len += (size_t)n;
	wire_put16(m + len, type);
	wire_put16(m + len + 2, 1);
	wire_put32(m + len + 4, ttl);
	wire_put16(m + len + 8, rdlen);
	memcpy(m + len + 10, rdata, rdlen);
	wire_count_inc(m, 6);
	return len + 10 + rdlen;
}

START_TEST(chain_addresses)
{
	uint8_t m[1024] = { 0x12, 0x34, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0 };
	uint8_t target[256], b[256];
	size_t len = WIRE_HDR;
	int n = wire_name_from_str("Contoso.AzureCR.io", m + len);
	len += (size_t)n;
	wire_put16(m + len, 1);
	wire_put16(m + len + 2, 1);
	len += 4;
	/* Records out of order: the address before the CNAME that leads to it. */
	len = rr(m, len, "c2.example", 1, 60, "\x14\x3e\x00\x01", 4);
	int tl = wire_name_from_str("c1.example", target);
	len = rr(m, len, "contoso.azurecr.io", 5, 300, target, (uint16_t)tl);
	tl = wire_name_from_str("C2.example", b);
	len = rr(m, len, "c1.example", 5, 300, b, (uint16_t)tl);
	len = rr(m, len, "unrelated.example", 1, 60, "\xc0\x00\x02\x01", 4);   /* not on the chain */
	len = rr(m, len, "c2.example", 28, 30, "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01", 16);
	struct seen_addrs x = { 0 };
	nft_answer_addresses(m, len, collect, &x);
	ck_assert_int_eq(x.n, 2);
	ck_assert_str_eq(x.text[0], "20.62.0.1");
	ck_assert_uint_eq(x.ttl[0], 60);
	ck_assert_str_eq(x.text[1], "2001:db8::1");

	/* Not NOERROR: nothing. */
	m[3] = 0x83;
	memset(&x, 0, sizeof(x));
	nft_answer_addresses(m, len, collect, &x);
	ck_assert_int_eq(x.n, 0);
	m[3] = 0x80;
	/* Cut short anywhere: never past the end, never a crash. */
	for (size_t cut = 0; cut < len; cut++)
		nft_answer_addresses(m, cut, collect, &x);
}
END_TEST

Suite *nft_suite(void)
{
	Suite *s = suite_create("nft");
	TCase *tc = tcase_create("nft");
	tcase_add_test(tc, timeouts);
	tcase_add_test(tc, batch_text);
	tcase_add_test(tc, ruleset);
	tcase_add_test(tc, chain_addresses);
	suite_add_tcase(s, tc);
	return s;
}
