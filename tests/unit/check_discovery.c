/* Discovery documents: both shapes, every way they can be wrong, and the
 * saved state written and read back. */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_suites.h"
#include "discovery.h"
#include "discovery_doc.h"
#include "saver.h"

static const char *login = "contoso.azurecr.io";

static enum discovery_status parse(const char *doc, char ***list, char *why)
{
	return discovery_doc_parse(doc, strlen(doc), login, list, why, 600);
}

/** Assert that list holds exactly the names in want (NULL-terminated), then free it. */
static void ck_list_is(char **list, const char *const *want)
{
	size_t i = 0;

	for (; want[i]; i++) {
		ck_assert_ptr_nonnull(list[i]);
		ck_assert_str_eq(list[i], want[i]);
	}
	ck_assert_ptr_null(list[i]);
	discovery_list_free(list);
}

START_TEST(show_endpoints_shape)
{
	char why[600], **list;
	const char *doc =
		"{ \"dataEndpoints\": [ { \"region\": \"westus\", \"endpoint\": \"Contoso.WestUS.data.azurecr.io\" },\n"
		"                       { \"region\": \"eastus\", \"endpoint\": \"contoso.eastus.data.azurecr.io\" },\n"
		"                       { \"region\": \"eastus\", \"endpoint\": \"contoso.eastus.data.azurecr.io.\" } ],\n"
		"  \"regionalEndpoints\": [ { \"region\": \"eastus\", \"endpoint\": \"contoso.eastus.geo.azurecr.io\" } ],\n"
		"  \"loginServer\": \"contoso.azurecr.io\" }";

	ck_assert_int_eq(parse(doc, &list, why), DISCOVERY_OK);
	/* lowercase, sorted, without duplicates or trailing dots */
	ck_list_is(list, (const char *const[]){ "contoso.eastus.data.azurecr.io",
						"contoso.eastus.geo.azurecr.io",
						"contoso.westus.data.azurecr.io", NULL });
}
END_TEST

START_TEST(arm_resource_shape)
{
	char why[600], **list;
	const char *doc =
		"{ \"id\": \"/subscriptions/x/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/contoso\",\n"
		"  \"properties\": { \"loginServer\": \"contoso.azurecr.io\", \"dataEndpointEnabled\": true,\n"
		"    \"dataEndpointHostNames\": [ \"contoso.eastus.data.azurecr.io\", \"contoso.northeurope.data.azurecr.io\" ] } }";

	ck_assert_int_eq(parse(doc, &list, why), DISCOVERY_OK);
	ck_assert_str_eq(list[0], "contoso.eastus.data.azurecr.io");
	ck_assert_str_eq(list[1], "contoso.northeurope.data.azurecr.io");
	discovery_list_free(list);
	doc = "{ \"properties\": { \"loginServer\": \"contoso.azurecr.io\", \"dataEndpointEnabled\": false,"
	      " \"dataEndpointHostNames\": [] } }";
	ck_assert_int_eq(parse(doc, &list, why), DISCOVERY_NO_DEDICATED);
	ck_assert_msg(strstr(why, "--data-endpoint-enabled") != NULL, "%s", why);
	/* api-version 2025-11-01 adds regional endpoints, null when they are off. */
	doc = "{ \"properties\": { \"loginServer\": \"contoso.azurecr.io\",\n"
	      "  \"dataEndpointHostNames\": [ \"contoso.eastus.data.azurecr.io\" ],\n"
	      "  \"regionalEndpoints\": \"Enabled\",\n"
	      "  \"regionalEndpointHostNames\": [ \"contoso.eastus.geo.azurecr.io\", \"contoso.westus2.geo.azurecr.io\" ] } }";
	ck_assert_int_eq(parse(doc, &list, why), DISCOVERY_OK);
	ck_list_is(list, (const char *const[]){ "contoso.eastus.data.azurecr.io",
						"contoso.eastus.geo.azurecr.io",
						"contoso.westus2.geo.azurecr.io", NULL });
	doc = "{ \"properties\": { \"loginServer\": \"contoso.azurecr.io\",\n"
	      "  \"dataEndpointHostNames\": [ \"contoso.eastus.data.azurecr.io\" ],\n"
	      "  \"regionalEndpoints\": \"Disabled\", \"regionalEndpointHostNames\": null } }";
	ck_assert_int_eq(parse(doc, &list, why), DISCOVERY_OK);
	ck_list_is(list, (const char *const[]){ "contoso.eastus.data.azurecr.io", NULL });
	/* A regional name of another registry rejects the document whole. */
	doc = "{ \"properties\": { \"loginServer\": \"contoso.azurecr.io\",\n"
	      "  \"dataEndpointHostNames\": [ \"contoso.eastus.data.azurecr.io\" ],\n"
	      "  \"regionalEndpointHostNames\": [ \"evil.eastus.geo.azurecr.io\" ] } }";
	ck_assert_int_eq(parse(doc, &list, why), DISCOVERY_FOREIGN);
}
END_TEST

START_TEST(rejected_documents)
{
	char why[600], **list;
	static const struct { const char *doc; enum discovery_status st; const char *says; } cases[] = {
		{ "", DISCOVERY_BAD, "not JSON" },
		{ "{ \"loginServer\": ", DISCOVERY_BAD, "not JSON" },
		{ "[ 1, 2 ]", DISCOVERY_BAD, "not a JSON object" },
		{ "{ \"dataEndpoints\": [] }", DISCOVERY_BAD, "no 'loginServer'" },
		{ "{ \"loginServer\": 42 }", DISCOVERY_BAD, "no 'loginServer'" },
		{ "{ \"loginServer\": \"contoso.azurecr.io\", \"dataEndpoints\": \"x\" }", DISCOVERY_BAD, "not an array" },
		{ "{ \"loginServer\": \"contoso.azurecr.io\", \"dataEndpoints\": [ { \"region\": \"x\" } ] }",
		  DISCOVERY_BAD, "has no endpoint name" },
		{ "{ \"loginServer\": \"contoso.azurecr.io\", \"dataEndpoints\": [ 7 ] }", DISCOVERY_BAD, "has no endpoint name" },
		{ "{ \"loginServer\": \"contoso.azurecr.io\", \"loginServer\": \"evil.azurecr.io\" }", DISCOVERY_BAD, "duplicate" },
		{ "{ \"loginServer\": \"other.azurecr.io\", \"dataEndpoints\": [] }", DISCOVERY_WRONG_LOGIN, "not 'contoso.azurecr.io'" },
		{ "{ \"loginServer\": \"contoso.azurecr.io\", \"dataEndpoints\": [ { \"endpoint\": \"*.blob.core.windows.net\" } ] }",
		  DISCOVERY_NO_DEDICATED, "az acr update --name NAME --data-endpoint-enabled" },
		{ "{ \"loginServer\": \"contoso.azurecr.io\", \"dataEndpoints\": [] }", DISCOVERY_NO_DEDICATED, "no dedicated" },
		{ "{ \"loginServer\": \"contoso.azurecr.io\", \"dataEndpoints\": [ { \"endpoint\": \"contoso.eastus.data.azurecr.io\" },"
		  " { \"endpoint\": \"evil.eastus.data.azurecr.io\" } ] }", DISCOVERY_FOREIGN, "'evil.eastus.data.azurecr.io'" },
		{ "{ \"loginServer\": \"contoso.azurecr.io\", \"dataEndpoints\": [ { \"endpoint\": \"contoso.eastus.data.azurecr.io.evil.example\" } ] }",
		  DISCOVERY_FOREIGN, "is not one of registry" },
		{ "{ \"loginServer\": \"contoso.azurecr.io\", \"regionalEndpoints\": [ \"attacker.blob.storage.azure.net\" ],"
		  " \"dataEndpoints\": [ \"contoso.eastus.data.azurecr.io\" ] }", DISCOVERY_FOREIGN, "attacker.blob.storage.azure.net" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		list = NULL;
		enum discovery_status st = parse(cases[i].doc, &list, why);
		ck_assert_msg(st == cases[i].st, "case %zu: status %d, want %d (%s)", i, st, cases[i].st, why);
		ck_assert_msg(strstr(why, cases[i].says) != NULL, "case %zu: '%s' lacks '%s'", i, why, cases[i].says);
		ck_assert_ptr_null(list);
	}
}
END_TEST

START_TEST(non_utf8_and_huge_documents)
{
	char why[600], **list;
	const char bad[] = "{ \"loginServer\": \"contoso.azurecr.io\", \"dataEndpoints\": [ \"\xff\xfe.eastus.data.azurecr.io\" ] }";
	ck_assert_int_eq(discovery_doc_parse(bad, sizeof(bad) - 1, login, &list, why, sizeof(why)), DISCOVERY_BAD);
	/* a NUL inside the document */
	const char nul[] = "{ \"loginServer\": \"contoso.azurecr.io\0evil\" }";
	ck_assert_int_eq(discovery_doc_parse(nul, sizeof(nul) - 1, login, &list, why, sizeof(why)), DISCOVERY_BAD);
	size_t big = 2 * 1024 * 1024;
	char *doc = malloc(big);
	memset(doc, ' ', big);
	doc[0] = '{';
	doc[big - 1] = '}';
	ck_assert_int_eq(discovery_doc_parse(doc, big, login, &list, why, sizeof(why)), DISCOVERY_BAD);
	ck_assert_msg(strstr(why, "larger than") != NULL, "%s", why);
	/* deep nesting is refused by the parser, not by the stack */
	size_t depth = 100000;
	char *deep = malloc(2 * depth + 1);
	memset(deep, '[', depth);
	memset(deep + depth, ']', depth);
	ck_assert_int_eq(discovery_doc_parse(deep, 2 * depth, login, &list, why, sizeof(why)), DISCOVERY_BAD);
	free(deep);
	free(doc);
}
END_TEST

START_TEST(state_roundtrip)
{
	char why[600], dir[] = "/tmp/acrdns-state-XXXXXX";
	char *list[] = { "contoso.eastus.data.azurecr.io", "contoso.westus.data.azurecr.io", NULL };

	ck_assert_ptr_nonnull(mkdtemp(dir));
	char sub[64];
	snprintf(sub, sizeof(sub), "%s/state", dir);   /* created on first save */
	ck_assert_ptr_null(discovery_state_load(sub, login));
	ck_assert_int_eq(discovery_state_save(sub, login, list, why, sizeof(why)), 0);
	char **back = discovery_state_load(sub, login);
	ck_assert_ptr_nonnull(back);
	ck_assert_str_eq(back[0], list[0]);
	ck_assert_str_eq(back[1], list[1]);
	ck_assert_ptr_null(back[2]);
	discovery_list_free(back);
	/* a saved file for another registry is not ours */
	ck_assert_ptr_null(discovery_state_load(sub, "other.azurecr.io"));
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

struct save_failures {
	int n;
	char login[64];
	char why[512];
};

static void count_failure(void *arg, const char *login_server, const char *why)
{
	struct save_failures *f = arg;

	f->n++;
	snprintf(f->login, sizeof(f->login), "%s", login_server);
	snprintf(f->why, sizeof(f->why), "%s", why);
}

/* A burst of changes, written by the thread: the file ends with the last one. */
START_TEST(saver_writes_last_state)
{
	char dir[] = "/tmp/acrdns-saver-XXXXXX", sub[64];
	char *a[] = { "contoso.eastus.data.azurecr.io", NULL };
	char *b[] = { "contoso.eastus.data.azurecr.io", "contoso.westus.data.azurecr.io", NULL };
	char *last[] = { "contoso.northeurope.data.azurecr.io", NULL };
	struct save_failures f = { 0 };
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(sub, sizeof(sub), "%s/state", dir);
	struct saver *sv = saver_new(loop, discovery_state_save, count_failure, &f);
	ck_assert_ptr_nonnull(sv);
	for (int i = 0; i < 200; i++)
		saver_save(sv, sub, login, i % 2 ? b : a);
	saver_save(sv, sub, login, last);
	/* Some are written by now, the last maybe not: free writes what waits. */
	saver_free(sv);
	ck_assert_int_eq(f.n, 0);
	char **back = discovery_state_load(sub, login);
	ck_assert_ptr_nonnull(back);
	ck_assert_str_eq(back[0], last[0]);
	ck_assert_ptr_null(back[1]);
	discovery_list_free(back);

	/* Written while the caller goes on: it shows up without saver_free. */
	sv = saver_new(loop, discovery_state_save, count_failure, &f);
	saver_save(sv, sub, login, b);
	for (int i = 0; i < 5000 && saver_pending(sv); i++)
		usleep(1000);
	ck_assert_int_eq((int)saver_pending(sv), 0);
	back = discovery_state_load(sub, login);
	ck_assert_ptr_nonnull(back);
	ck_assert_str_eq(back[1], b[1]);
	discovery_list_free(back);
	saver_free(sv);
	ev_loop_destroy(loop);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* A failed write is told to the loop, with the reason, as before. */
START_TEST(saver_reports_failures_on_loop)
{
	char *a[] = { "contoso.eastus.data.azurecr.io", NULL };
	struct save_failures f = { 0 };
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct saver *sv = saver_new(loop, discovery_state_save, count_failure, &f);

	saver_save(sv, "/dev/null/state", login, a);   /* no directory can be made there */
	for (int i = 0; i < 5000 && saver_pending(sv); i++)
		usleep(1000);
	ck_assert_int_eq(f.n, 0);   /* not from the thread */
	for (int i = 0; i < 100 && f.n == 0; i++)
		ev_run(loop, EVRUN_NOWAIT);
	ck_assert_int_eq(f.n, 1);
	ck_assert_str_eq(f.login, login);
	ck_assert_msg(strstr(f.why, "/dev/null/state") != NULL, "%s", f.why);
	saver_free(sv);
	ev_loop_destroy(loop);
}
END_TEST

Suite *discovery_suite(void)
{
	Suite *s = suite_create("discovery");
	TCase *tc = tcase_create("documents");
	tcase_add_test(tc, show_endpoints_shape);
	tcase_add_test(tc, arm_resource_shape);
	tcase_add_test(tc, rejected_documents);
	tcase_add_test(tc, non_utf8_and_huge_documents);
	tcase_add_test(tc, state_roundtrip);
	tcase_add_test(tc, saver_writes_last_state);
	tcase_add_test(tc, saver_reports_failures_on_loop);
	suite_add_tcase(s, tc);
	return s;
}
