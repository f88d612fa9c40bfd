/* nftables batching: the text of one transaction and the timeouts. */
#include "autoconf.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_suites.h"
#include "nft.h"

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

Suite *nft_suite(void)
{
	Suite *s = suite_create("nft");
	TCase *tc = tcase_create("nft");
	tcase_add_test(tc, timeouts);
	tcase_add_test(tc, batch_text);
	tcase_add_test(tc, ruleset);
	suite_add_tcase(s, tc);
	return s;
}
