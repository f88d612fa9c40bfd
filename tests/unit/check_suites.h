/* Suites of the unit test runner, one per module. */
#ifndef CHECK_SUITES_H
#define CHECK_SUITES_H

#include <check.h>

Suite *wire_suite(void);
Suite *cache_suite(void);
Suite *config_suite(void);
Suite *policy_suite(void);
Suite *discovery_suite(void);
Suite *nft_suite(void);
Suite *query_suite(void);
Suite *scrub_suite(void);
Suite *audit_suite(void);
Suite *loopdetect_suite(void);
Suite *forward_suite(void);
Suite *failcache_suite(void);
Suite *loopstall_suite(void);

/** Write text to a new temporary file; returns its path (static buffer per call site). */
char *unit_tmpfile(const char *name, const char *text);

#endif
