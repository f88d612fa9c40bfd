/* The audit table: counts per name, the rule kept, busiest first, the
 * bound on names, reset, and notes from several threads at once. */
#include "autoconf.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "audit.h"
#include "check_suites.h"
#include "wire.h"

static void note(struct audit *a, const char *name, const char *rule)
{
	uint8_t wire[WIRE_NAME_MAX + 1];
	int len = wire_name_from_str(name, wire);

	ck_assert_int_gt(len, 0);
	audit_note(a, wire, (size_t)len, rule);
}

static const char *entry_name(const struct audit_entry *e, char *buf)
{
	wire_name_str(e->name, buf);
	return buf;
}

START_TEST(test_counts_busiest_first)
{
	struct audit *a = audit_new(0);
	struct audit_report r;
	char buf[WIRE_NAME_STRLEN];

	note(a, "x.blob.core.windows.net", "deny *.blob.core.windows.net (storage.rules:4)");
	for (int i = 0; i < 3; i++)
		note(a, "evil.example", "default: not on the allowlist");
	note(a, "x.blob.core.windows.net", "deny *.blob.core.windows.net (storage.rules:4)");
	ck_assert_int_eq(audit_report(a, &r), 0);
	ck_assert_uint_eq(r.n, 2);
	ck_assert_uint_eq(r.questions, 5);
	ck_assert_uint_eq(r.unlisted, 0);
	ck_assert_str_eq(entry_name(&r.entries[0], buf), "evil.example.");
	ck_assert_uint_eq(r.entries[0].count, 3);
	ck_assert_str_eq(r.entries[0].rule, "default: not on the allowlist");
	ck_assert_str_eq(entry_name(&r.entries[1], buf), "x.blob.core.windows.net.");
	ck_assert_uint_eq(r.entries[1].count, 2);
	ck_assert(r.entries[1].first <= r.entries[1].last);
	audit_report_free(&r);
	audit_free(a);
}
END_TEST

START_TEST(test_rule_follows_the_last_question)
{
	struct audit *a = audit_new(0);
	struct audit_report r;

	note(a, "evil.example", "default: not on the allowlist");
	note(a, "evil.example", "deny evil.example (config:3)");
	ck_assert_int_eq(audit_report(a, &r), 0);
	ck_assert_uint_eq(r.n, 1);
	ck_assert_str_eq(r.entries[0].rule, "deny evil.example (config:3)");
	audit_report_free(&r);
	audit_free(a);
}
END_TEST

START_TEST(test_bounded_rest_counted)
{
	struct audit *a = audit_new(100);
	struct audit_report r;
	char name[64];

	for (int i = 0; i < 250; i++) {
		snprintf(name, sizeof(name), "n%d.example", i);
		note(a, name, "default: not on the allowlist");
	}
	note(a, "n3.example", "default: not on the allowlist");    /* listed: counted there */
	ck_assert_int_eq(audit_report(a, &r), 0);
	ck_assert_uint_eq(r.n, 100);
	ck_assert_uint_eq(r.max_names, 100);
	ck_assert_uint_eq(r.questions, 251);
	ck_assert_uint_eq(r.unlisted, 150);
	ck_assert_uint_eq(r.entries[0].count, 2);
	audit_report_free(&r);
	audit_reset(a);
	ck_assert_int_eq(audit_report(a, &r), 0);
	ck_assert_uint_eq(r.n, 0);
	ck_assert_uint_eq(r.questions, 0);
	ck_assert_uint_eq(r.unlisted, 0);
	audit_report_free(&r);
	/* After a reset, new names fit again. */
	note(a, "again.example", "default: not on the allowlist");
	ck_assert_int_eq(audit_report(a, &r), 0);
	ck_assert_uint_eq(r.n, 1);
	audit_report_free(&r);
	audit_free(a);
}
END_TEST

START_TEST(test_long_rule_is_cut)
{
	struct audit *a = audit_new(0);
	struct audit_report r;
	char rule[1000];

	memset(rule, 'r', sizeof(rule) - 1);
	rule[sizeof(rule) - 1] = '\0';
	note(a, "evil.example", rule);
	note(a, "evil.example", rule);
	ck_assert_int_eq(audit_report(a, &r), 0);
	ck_assert_uint_eq(strlen(r.entries[0].rule), AUDIT_RULE_MAX - 1);
	ck_assert_uint_eq(r.entries[0].count, 2);
	audit_report_free(&r);
	audit_free(a);
}
END_TEST

static void *noter(void *arg)
{
	struct audit *a = arg;
	char name[64];

	for (int i = 0; i < 20000; i++) {
		snprintf(name, sizeof(name), "n%d.example", i % 50);
		note(a, name, "default: not on the allowlist");
	}
	return NULL;
}

START_TEST(test_threads_count_every_question)
{
	struct audit *a = audit_new(0);
	struct audit_report r;
	pthread_t t[4];

	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, noter, a);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	ck_assert_int_eq(audit_report(a, &r), 0);
	ck_assert_uint_eq(r.n, 50);
	ck_assert_uint_eq(r.questions, 80000);
	uint64_t sum = 0;
	for (size_t i = 0; i < r.n; i++)
		sum += r.entries[i].count;
	ck_assert_uint_eq(sum, 80000);
	audit_report_free(&r);
	audit_free(a);
}
END_TEST

Suite *audit_suite(void)
{
	Suite *s = suite_create("audit");
	TCase *tc = tcase_create("table");

	tcase_add_test(tc, test_counts_busiest_first);
	tcase_add_test(tc, test_rule_follows_the_last_question);
	tcase_add_test(tc, test_bounded_rest_counted);
	tcase_add_test(tc, test_long_rule_is_cut);
	tcase_add_test(tc, test_threads_count_every_question);
	suite_add_tcase(s, tc);
	return s;
}
