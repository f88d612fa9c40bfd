/* Unit test runner: every module's suite in one binary. */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_suites.h"
#include "hash.h"

static char tmpdir[] = "/tmp/acrdns-unit-XXXXXX";

char *unit_tmpfile(const char *name, const char *text)
{
	char *path = malloc(strlen(tmpdir) + strlen(name) + 2);
	FILE *f;

	sprintf(path, "%s/%s", tmpdir, name);
	f = fopen(path, "w");
	if (!f)
		abort();
	fputs(text, f);
	fclose(f);
	return path;
}

/* Under make check the report goes to check_acrdns.log: name each failure
 * on the terminal too, through the descriptor the harness leaves open. */
static void tell_console(SRunner *sr)
{
	const char *fd = getenv("ACRDNS_CONSOLE_FD");
	int n = srunner_ntests_failed(sr);
	FILE *f;

	if (!fd || n == 0 || !(f = fdopen(dup(atoi(fd)), "w")))
		return;
	TestResult **tr = srunner_failures(sr);
	for (int i = 0; i < n; i++)
		fprintf(f, "unit: %s:%d: %s: %s\n", tr_lfile(tr[i]), tr_lno(tr[i]), tr_tcname(tr[i]),
			tr_msg(tr[i]));
	free(tr);
	fclose(f);
}

int main(void)
{
	SRunner *sr;
	int failed;

	if (!mkdtemp(tmpdir))
		return 99;
	hash_init();
	sr = srunner_create(wire_suite());
	srunner_add_suite(sr, cache_suite());
	srunner_add_suite(sr, config_suite());
	srunner_add_suite(sr, policy_suite());
	srunner_add_suite(sr, discovery_suite());
	srunner_add_suite(sr, nft_suite());
	srunner_add_suite(sr, query_suite());
	srunner_add_suite(sr, scrub_suite());
	srunner_add_suite(sr, audit_suite());
	srunner_add_suite(sr, loopdetect_suite());
	srunner_add_suite(sr, forward_suite());
	srunner_add_suite(sr, failcache_suite());
	srunner_add_suite(sr, loopstall_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	tell_console(sr);
	srunner_free(sr);
	char cmd[64];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpdir);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
