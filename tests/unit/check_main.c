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
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	char cmd[64];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpdir);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
