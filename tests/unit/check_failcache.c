/* The failure memory (RFC 9520, RFC 8767 section 4) in virtual time: the
 * caller's clock is a number the test moves. */
#include "autoconf.h"

#include <stdio.h>
#include <string.h>

#include "check_suites.h"
#include "failcache.h"
#include "hash.h"
#include "wire.h"

static struct cache_key key_for(const char *name, uint16_t qtype, uint8_t flags, uint8_t *buf)
{
	int n = wire_name_from_str(name, buf);

	ck_assert_int_gt(n, 0);
	return (struct cache_key){ buf, (uint16_t)n, qtype, LDNS_RR_CLASS_IN, flags };
}

START_TEST(holds_then_rechecks_then_forgets)
{
	struct failcache *fc = failcache_new(16, 30000);
	uint8_t b[256];
	struct cache_key k = key_for("a.example.com", LDNS_RR_TYPE_A, 0, b);
	const struct failcache_why *why;

	hash_init();
	ck_assert_int_eq(failcache_check(fc, &k, 1000, &why), FAILCACHE_NONE);
	ck_assert_uint_eq(failcache_fail(fc, &k, 1000, 23, "upstream 192.0.2.1#53 unreachable"), 1000);
	ck_assert_int_eq(failcache_check(fc, &k, 1999, &why), FAILCACHE_HELD);
	ck_assert_uint_eq(why->ede, 23);
	ck_assert_str_eq(why->text, "upstream 192.0.2.1#53 unreachable");
	ck_assert_int_eq(failcache_check(fc, &k, 2000, &why), FAILCACHE_RECHECK);
	ck_assert_int_eq(failcache_check(fc, &k, 30999, &why), FAILCACHE_RECHECK);
	ck_assert_int_eq(failcache_check(fc, &k, 31000, &why), FAILCACHE_NONE);
	ck_assert_uint_eq(failcache_count(fc, 31000), 0);
	/* An answer forgets it at once. */
	failcache_fail(fc, &k, 40000, 22, "x");
	failcache_forget(fc, &k);
	ck_assert_int_eq(failcache_check(fc, &k, 40001, &why), FAILCACHE_NONE);
	failcache_free(fc);
}
END_TEST

START_TEST(backs_off_to_five_minutes)
{
	struct failcache *fc = failcache_new(16, 30000);
	uint8_t b[256];
	struct cache_key k = key_for("a.example.com", LDNS_RR_TYPE_A, 0, b);
	const struct failcache_why *why;
	uint64_t now = 5000;
	uint32_t hold = 0, want = 1000;

	hash_init();
	/* Failing again as soon as each hold-down ends: 1, 2, 4 ... s, then 300 s. */
	for (int i = 0; i < 12; i++) {
		hold = failcache_fail(fc, &k, now, 22, "no upstream answered");
		ck_assert_uint_eq(hold, want);
		want = want * 2 > FAILCACHE_HOLD_MAX_MS ? FAILCACHE_HOLD_MAX_MS : want * 2;
		now += hold;
	}
	ck_assert_uint_eq(hold, FAILCACHE_HOLD_MAX_MS);
	ck_assert_int_eq(failcache_check(fc, &k, now - 1, &why), FAILCACHE_HELD);
	/* Long after, a failure starts from 1 s again. */
	ck_assert_uint_eq(failcache_fail(fc, &k, now + 2ull * FAILCACHE_HOLD_MAX_MS, 22, ""), 1000);
	failcache_free(fc);
}
END_TEST

START_TEST(per_question_and_bounded)
{
	struct failcache *fc = failcache_new(8, 30000);
	uint8_t b1[256], b2[256], b3[256], b4[256], buf[256];
	struct cache_key a = key_for("a.example.com", LDNS_RR_TYPE_A, 0, b1);
	struct cache_key aaaa = key_for("a.example.com", LDNS_RR_TYPE_AAAA, 0, b2);
	struct cache_key ado = key_for("a.example.com", LDNS_RR_TYPE_A, CACHE_KEY_DO, b3);
	struct cache_key other = key_for("b.example.com", LDNS_RR_TYPE_A, 0, b4);
	const struct failcache_why *why;

	hash_init();
	failcache_fail(fc, &a, 1000, 22, "");
	ck_assert_int_eq(failcache_check(fc, &a, 1001, &why), FAILCACHE_HELD);
	ck_assert_int_eq(failcache_check(fc, &aaaa, 1001, &why), FAILCACHE_NONE);
	ck_assert_int_eq(failcache_check(fc, &ado, 1001, &why), FAILCACHE_NONE);
	ck_assert_int_eq(failcache_check(fc, &other, 1001, &why), FAILCACHE_NONE);
	failcache_fail(fc, &aaaa, 1000, 22, "");
	ck_assert_uint_eq(failcache_flush(fc, b1, a.name_len), 2);   /* every type of the name */
	ck_assert_int_eq(failcache_check(fc, &aaaa, 1001, &why), FAILCACHE_NONE);
	/* A flood of failing names stays within the table. */
	for (int i = 0; i < 1000; i++) {
		char name[64];
		snprintf(name, sizeof(name), "n%d.example.com", i);
		struct cache_key k = key_for(name, LDNS_RR_TYPE_A, 0, buf);
		failcache_fail(fc, &k, 2000, 22, "");
		ck_assert_int_eq(failcache_check(fc, &k, 2001, &why), FAILCACHE_HELD);
	}
	ck_assert_uint_le(failcache_count(fc, 2001), 8);
	failcache_reset(fc, 30000);
	ck_assert_uint_eq(failcache_count(fc, 2001), 0);
	failcache_free(fc);
}
END_TEST

Suite *failcache_suite(void)
{
	Suite *s = suite_create("failcache");
	TCase *t = tcase_create("memory");

	tcase_add_test(t, holds_then_rechecks_then_forgets);
	tcase_add_test(t, backs_off_to_five_minutes);
	tcase_add_test(t, per_question_and_bounded);
	suite_add_tcase(s, t);
	return s;
}
