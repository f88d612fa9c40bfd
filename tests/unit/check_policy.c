/* The policy matcher: precedence, case, labels that hold '.' or NUL, long
 * names, wildcard versus apex, registry forms, and a million rules. */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check_suites.h"
#include "config.h"
#include "policy.h"
#include "regname.h"
#include "wire.h"

static char err[1024];

static struct policy *build(const char *conf, struct config **cfgp)
{
	char *path = unit_tmpfile("policy.conf", conf);
	struct config *cfg = config_load(path, err, sizeof(err));
	free(path);
	ck_assert_msg(cfg != NULL, "%s", err);
	struct policy *p = policy_new(cfg, NULL, err, sizeof(err));
	ck_assert_msg(p != NULL, "%s", err);
	*cfgp = cfg;
	return p;
}

static enum verdict decide_wire(const struct policy *p, const uint8_t *wire, size_t n, char *rule)
{
	struct policy_decision d;
	policy_decide(p, wire, n, &d);
	if (rule)
		policy_describe(p, &d, rule, 400);
	return d.verdict;
}

static enum verdict decide(const struct policy *p, const char *name, char *rule)
{
	uint8_t wire[256];
	int n = wire_name_from_str(name, wire);
	ck_assert_int_gt(n, 0);
	return decide_wire(p, wire, (size_t)n, rule);
}

#define ck_rule_starts(rule, prefix) \
	ck_assert_msg(strncmp(rule, prefix, strlen(prefix)) == 0, "rule '%s' is not '%s...'", rule, prefix)

START_TEST(precedence_table)
{
	struct config *cfg;
	char rule[400];
	struct policy *p = build(
		"upstreams = [ \"192.0.2.1\" ];\n"
		"mode = \"filter\";\n"
		"allow = [ \"*.example.com\", \"ok.deny.example.com\", \"tie.example.com\", \"*.tie2.example.com\" ];\n"
		"deny  = [ \"*.deny.example.com\", \"bad.example.com\", \"tie.example.com\", \"*.tie2.example.com\",\n"
		"          \"*.blob.core.windows.net\" ];\n", &cfg);

	/* a wildcard covers names strictly below, not its apex */
	ck_assert_int_eq(decide(p, "a.example.com", rule), VERDICT_ALLOW);
	ck_rule_starts(rule, "allow *.example.com (");
	ck_assert_int_eq(decide(p, "a.b.c.example.com", NULL), VERDICT_ALLOW);
	ck_assert_int_eq(decide(p, "example.com", rule), VERDICT_PASS);
	ck_assert_str_eq(rule, "default: filter mode forwards");
	/* exact beats wildcard, both ways */
	ck_assert_int_eq(decide(p, "bad.example.com", rule), VERDICT_DENY);
	ck_rule_starts(rule, "deny bad.example.com (");
	ck_assert_msg(strstr(rule, ".conf:4)") != NULL, "%s", rule);
	ck_assert_int_eq(decide(p, "ok.deny.example.com", NULL), VERDICT_ALLOW);
	/* the longer wildcard beats the shorter */
	ck_assert_int_eq(decide(p, "x.deny.example.com", rule), VERDICT_DENY);
	ck_rule_starts(rule, "deny *.deny.example.com");
	ck_assert_int_eq(decide(p, "deny.example.com", NULL), VERDICT_ALLOW);
	/* deny beats allow on a tie, exact and wildcard */
	ck_assert_int_eq(decide(p, "tie.example.com", NULL), VERDICT_DENY);
	ck_assert_int_eq(decide(p, "x.tie2.example.com", NULL), VERDICT_DENY);
	/* case and the trailing dot do not matter */
	ck_assert_int_eq(decide(p, "EVIL.Blob.Core.Windows.NET.", NULL), VERDICT_DENY);
	ck_assert_int_eq(decide(p, "blob.core.windows.net", NULL), VERDICT_PASS);
	ck_assert_int_eq(decide(p, "unrelated.test", NULL), VERDICT_PASS);
	policy_free(p);
	config_free(cfg);
}
END_TEST

START_TEST(allowlist_mode_and_registries)
{
	struct config *cfg;
	char rule[400];
	char *rules = unit_tmpfile("deny.rules",
		"# comment line\n\ndeny *.azurecr.io   # every other registry\ndeny *.blob.core.windows.net\n");
	char conf[1024];
	snprintf(conf, sizeof(conf),
		 "upstreams = [ \"192.0.2.1\" ];\n"
		 "rules = [ \"%s\" ];\n"
		 "registries = ( { login_server = \"contoso.azurecr.io\";\n"
		 "  data_endpoints = [ \"contoso.eastus.data.azurecr.io\" ]; } );\n"
		 "local = ( { name = \"mirror.lab\"; addresses = [ \"10.0.0.5\" ]; } );\n", rules);
	struct policy *p = build(conf, &cfg);

	ck_assert_int_eq(decide(p, "contoso.azurecr.io", rule), VERDICT_ALLOW);
	ck_rule_starts(rule, "allow contoso.azurecr.io (registry contoso.azurecr.io:3)");
	ck_assert_int_eq(decide(p, "contoso.eastus.data.azurecr.io", rule), VERDICT_ALLOW);
	ck_assert_int_eq(decide(p, "contoso.westus.data.azurecr.io", rule), VERDICT_DENY);
	ck_rule_starts(rule, "deny *.azurecr.io (");
	ck_assert_msg(strstr(rule, "deny.rules:3)") != NULL, "%s", rule);
	ck_assert_int_eq(decide(p, "attacker.azurecr.io", NULL), VERDICT_DENY);
	ck_assert_int_eq(decide(p, "x.contoso.azurecr.io", NULL), VERDICT_DENY);
	ck_assert_int_eq(decide(p, "acct.blob.core.windows.net", NULL), VERDICT_DENY);
	ck_assert_int_eq(decide(p, "www.example.com", rule), VERDICT_DENY);
	ck_assert_str_eq(rule, "default: not on the allowlist");
	ck_assert_int_eq(decide(p, "Mirror.Lab", NULL), VERDICT_LOCAL);
	ck_assert_uint_eq(p->n_files, 1);
	ck_assert_uint_eq(p->file_counts[0], 2);
	policy_free(p);
	config_free(cfg);
	free(rules);
}
END_TEST

START_TEST(resolver_arpa_is_local_whatever_the_rules)
{
	struct config *cfg;
	char rule[400];
	struct policy *p = build("upstreams = [ \"192.0.2.1\" ];\nmode = \"filter\";\n"
				 "allow = [ \"*.resolver.arpa\", \"resolver.arpa\", \"_dns.resolver.arpa\",\n"
				 "          \"*._dns.resolver.arpa\" ];\n"
				 "deny = [ \"*.arpa\" ];\n", &cfg);
	struct policy_decision d;
	uint8_t wire[256];
	/* One label of 15 bytes that ends as the zone's wire form does: not the zone. */
	static const uint8_t one_label[] = "\x0f" "x" "\x08" "resolver" "\x04" "arpa";

	ck_assert_int_eq(decide(p, "_dns.resolver.arpa", rule), VERDICT_LOCAL);
	ck_rule_starts(rule, "local resolver.arpa (built in");
	ck_assert_int_eq(decide(p, "RESOLVER.ARPA", NULL), VERDICT_LOCAL);
	ck_assert_int_eq(decide(p, "a.b._dns.resolver.arpa", NULL), VERDICT_LOCAL);
	ck_assert_int_eq(decide(p, "xresolver.arpa", NULL), VERDICT_DENY);
	ck_assert_int_eq(decide(p, "arpa", NULL), VERDICT_PASS);
	ck_assert_int_eq(decide(p, "in-addr.arpa", NULL), VERDICT_DENY);
	ck_assert_int_eq(decide_wire(p, one_label, sizeof(one_label), NULL), VERDICT_PASS);
	int n = wire_name_from_str("_dns.resolver.arpa", wire);
	policy_decide(p, wire, (size_t)n, &d);
	const struct cfg_local *l = policy_local(p, &d);
	ck_assert_uint_eq(l->n4 + l->n6, 0); /* NODATA for every type */
	policy_free(p);
	config_free(cfg);
}
END_TEST

START_TEST(labels_holding_dot_or_nul_do_not_match)
{
	struct config *cfg;
	struct policy *p = build(
		"upstreams = [ \"192.0.2.1\" ];\n"
		"allow = [ \"contoso.azurecr.io\", \"*.ok.example\" ];\n", &cfg);
	uint8_t w[256];
	int n;

	/* "contoso.azurecr.io" as ONE label under evil.example */
	n = wire_name_from_str("contoso\\.azurecr\\.io.evil.example", w);
	ck_assert_int_eq(decide_wire(p, w, (size_t)n, NULL), VERDICT_DENY);
	/* contoso.azurecr.io\000.evil.example: a NUL in a label */
	n = wire_name_from_str("contoso.azurecr.io\\000.evil.example", w);
	ck_assert_int_eq(decide_wire(p, w, (size_t)n, NULL), VERDICT_DENY);
	n = wire_name_from_str("contoso.azurecr.io\\000", w);
	ck_assert_int_eq(decide_wire(p, w, (size_t)n, NULL), VERDICT_DENY);
	/* a label "x.ok" is not the two labels x and ok */
	n = wire_name_from_str("x\\.ok.example", w);
	ck_assert_int_eq(decide_wire(p, w, (size_t)n, NULL), VERDICT_DENY);
	n = wire_name_from_str("x.ok.example", w);
	ck_assert_int_eq(decide_wire(p, w, (size_t)n, NULL), VERDICT_ALLOW);
	/* a 255-byte name under an allowed wildcard */
	/* three labels of 63, one of 50, then ok.example: 3*64 + 51 + 3 + 8 + 1 = 255 */
	char longname[300], *o = longname;
	int lens[] = { 63, 63, 63, 50 };
	for (int i = 0; i < 4; i++) {
		memset(o, 'a', (size_t)lens[i]);
		o += lens[i];
		*o++ = '.';
	}
	strcpy(o, "ok.example");
	n = wire_name_from_str(longname, w);
	ck_assert_int_eq(n, 255);
	ck_assert_int_eq(decide_wire(p, w, (size_t)n, NULL), VERDICT_ALLOW);
	policy_free(p);
	config_free(cfg);
}
END_TEST

START_TEST(bad_rule_lines_name_file_and_line)
{
	struct config *cfg;
	char conf[512];
	const char *cases[][2] = {
		{ "allow a.example\npermit b.example\n", ":2: 'permit' is not a rule" },
		{ "deny\n", ":1: 'deny' takes exactly one name" },
		{ "deny a.example b.example\n", ":1: 'deny' takes exactly one name" },
		{ "deny a..example\n", ":1: 'a..example' is not a domain name" },
		{ "deny a.*.example\n", ":1: 'a.*.example': '*' may only stand as the first label" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *rules = unit_tmpfile("bad.rules", cases[i][0]);
		snprintf(conf, sizeof(conf), "upstreams = [ \"192.0.2.1\" ];\nrules = [ \"%s\" ];\n", rules);
		char *path = unit_tmpfile("bad.conf", conf);
		cfg = config_load(path, err, sizeof(err));
		ck_assert_ptr_nonnull(cfg);
		ck_assert_ptr_null(policy_new(cfg, NULL, err, sizeof(err)));
		ck_assert_msg(strstr(err, "bad.rules") && strstr(err, cases[i][1]), "%s", err);
		config_free(cfg);
		free(rules);
		free(path);
	}
	/* a missing file is an error; a glob that matches nothing is not */
	char *g = unit_tmpfile("g.conf", "upstreams = [ \"192.0.2.1\" ];\nrules = [ \"nothere.rules\" ];\n");
	cfg = config_load(g, err, sizeof(err));
	free(g);
	ck_assert_ptr_null(policy_new(cfg, NULL, err, sizeof(err)));
	ck_assert_msg(strstr(err, "nothere.rules: cannot read") != NULL, "%s", err);
	config_free(cfg);
	g = unit_tmpfile("g.conf", "upstreams = [ \"192.0.2.1\" ];\nrules = [ \"rules.d/*.rules\" ];\n");
	cfg = config_load(g, err, sizeof(err));
	free(g);
	struct policy *p = policy_new(cfg, NULL, err, sizeof(err));
	ck_assert_msg(p != NULL, "%s", err);
	policy_free(p);
	config_free(cfg);
}
END_TEST

START_TEST(endpoint_forms)
{
	char why[200];
	ck_assert_int_eq(regname_check_login_server("contoso.azurecr.io", why, sizeof(why)), 0);
	ck_assert_int_eq(regname_check_login_server("Contoso.AzureCR.us", why, sizeof(why)), 0);
	ck_assert_int_eq(regname_check_login_server("contoso.azurecr.cn", why, sizeof(why)), 0);
	ck_assert_int_eq(regname_check_login_server("contoso.azurecr.net", why, sizeof(why)), -1);
	ck_assert_int_eq(regname_check_login_server("a.contoso.azurecr.io", why, sizeof(why)), -1);
	ck_assert_int_eq(regname_check_login_server("con-toso.azurecr.io", why, sizeof(why)), -1);
	ck_assert_int_eq(regname_check_endpoint("contoso.azurecr.io", "contoso.eastus.data.azurecr.io", why, sizeof(why)), 0);
	ck_assert_int_eq(regname_check_endpoint("contoso.azurecr.io", "contoso.eastus.geo.azurecr.io", why, sizeof(why)), 0);
	ck_assert_int_eq(regname_check_endpoint("contoso.azurecr.io", "contoso.eastus.data.azurecr.us", why, sizeof(why)), -1);
	ck_assert_int_eq(regname_check_endpoint("contoso.azurecr.io", "other.eastus.data.azurecr.io", why, sizeof(why)), -1);
	ck_assert_int_eq(regname_check_endpoint("contoso.azurecr.io", "contoso.eastus.blob.azurecr.io", why, sizeof(why)), -1);
	ck_assert_int_eq(regname_check_endpoint("contoso.azurecr.io", "contoso.data.azurecr.io", why, sizeof(why)), -1);
	ck_assert_int_eq(regname_check_endpoint("contoso.azurecr.io", "contoso.east\\.us.data.azurecr.io", why, sizeof(why)), -1);
	ck_assert_int_eq(regname_check_endpoint("contoso.azurecr.io", "x.contoso.eastus.data.azurecr.io", why, sizeof(why)), -1);
	ck_assert_int_eq(regname_check_endpoint("contoso.azurecr.io", "contoso.blob.core.windows.net", why, sizeof(why)), -1);
}
END_TEST

START_TEST(ecr_forms_and_names)
{
	struct config *cfg;
	char region[64], why[400], rule[400];

	ck_assert(regname_ecr_region("123456789012.dkr.ecr.us-gov-west-1.amazonaws.com", region,
				    sizeof(region)));
	ck_assert_str_eq(region, "us-gov-west-1");
	ck_assert(regname_ecr_region("123456789012.DKR-ECR.AP-Southeast-2.on.aws", region, sizeof(region)));
	ck_assert_str_eq(region, "ap-southeast-2");
	ck_assert(!regname_ecr_region("123456789012.dkr.ecr.us--east-1.amazonaws.com", region, sizeof(region)));
	ck_assert(!regname_ecr_region("123456789012.dkr.ecr.-us-east-1.amazonaws.com", region, sizeof(region)));
	ck_assert(!regname_ecr_region("123456789012.dkr.ecr.us-east.amazonaws.com", region, sizeof(region)));
	ck_assert(!regname_ecr_region("12345678901a.dkr.ecr.us-east-1.amazonaws.com", region, sizeof(region)));
	ck_assert(!regname_ecr_region("123456789012.dkr.ecr.us-east-1.amazonaws.com.cn", region, sizeof(region)));
	ck_assert(!regname_ecr_region("contoso.azurecr.io", region, sizeof(region)));
	ck_assert_int_eq(regname_check_login_server("123456789012.dkr.ecr.eu-central-1.amazonaws.com",
						   why, sizeof(why)), 0);
	ck_assert_int_eq(regname_check_login_server("123456789012.dkr.ecr.eu_central-1.amazonaws.com",
						   why, sizeof(why)), -1);

	char *rules = unit_tmpfile("s3.rules", "deny *.s3.us-east-1.amazonaws.com\ndeny *.amazonaws.com\n");
	char conf[1024];
	snprintf(conf, sizeof(conf), "upstreams = [ \"192.0.2.1\" ];\nrules = [ \"%s\" ];\n"
		 "registries = ( { login_server = \"123456789012.dkr.ecr.us-east-1.amazonaws.com\"; } );\n",
		 rules);
	struct policy *p = build(conf, &cfg);
	ck_assert_int_eq(decide(p, "prod-us-east-1-starport-layer-bucket.s3.us-east-1.amazonaws.com", rule),
			 VERDICT_ALLOW);
	ck_rule_starts(rule, "allow prod-us-east-1-starport-layer-bucket.s3.us-east-1.amazonaws.com (registry ");
	ck_assert_int_eq(decide(p, "api.ecr.us-east-1.amazonaws.com", NULL), VERDICT_ALLOW);
	ck_assert_int_eq(decide(p, "123456789012.dkr.ecr.us-east-1.amazonaws.com", NULL), VERDICT_ALLOW);
	ck_assert_int_eq(decide(p, "other.s3.us-east-1.amazonaws.com", NULL), VERDICT_DENY);
	ck_assert_int_eq(decide(p, "x.prod-us-east-1-starport-layer-bucket.s3.us-east-1.amazonaws.com", NULL),
			 VERDICT_DENY);
	ck_assert_int_eq(decide(p, "111111111111.dkr.ecr.us-east-1.amazonaws.com", NULL), VERDICT_DENY);
	ck_assert_uint_eq(p->registries[0].n_endpoints, 2);
	policy_free(p);
	config_free(cfg);
	free(rules);
}
END_TEST

START_TEST(shared_registry_directive)
{
	static char hub[] = "  #   acrdns:  shared-registry  Docker Hub  \n"
			    "allow registry-1.docker.io # acrdns: not a directive\n";
	static char typo[] = "# acrdns: shared\n";
	struct rules *r = rules_new();
	FILE *f = fmemopen(hub, strlen(hub), "r");

	ck_assert_int_eq(rules_load_stream(r, f, "hub.rules", err, sizeof(err)), 1);
	fclose(f);
	ck_assert_str_eq(rules_source_shared(r, 0), "Docker Hub");
	ck_assert_uint_eq(rules_sources(r), 1);
	f = fmemopen(typo, strlen(typo), "r");
	ck_assert_int_eq(rules_load_stream(r, f, "typo.rules", err, sizeof(err)), -1);
	fclose(f);
	ck_assert_msg(strstr(err, "typo.rules:1: unknown directive '# acrdns: shared'") != NULL, "%s", err);
	ck_assert_ptr_null(rules_source_shared(r, 1));
	rules_free(r);
}
END_TEST

START_TEST(a_million_rules)
{
	struct config *cfg;
	char conf[512];
	char *path = unit_tmpfile("million.rules", "");
	FILE *f = fopen(path, "w");
	for (int i = 0; i < 1000000; i++)
		fprintf(f, "deny %s%d.tracker%d.example\n", (i & 1) ? "*." : "", i, i % 97);
	fclose(f);
	snprintf(conf, sizeof(conf), "upstreams = [ \"192.0.2.1\" ];\nmode = \"filter\";\nrules = [ \"%s\" ];\n", path);
	clock_t t0 = clock();
	struct policy *p = build(conf, &cfg);
	double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
	ck_assert_uint_eq(rules_count(p->rules), 1000000);
	ck_assert_int_eq(decide(p, "42.tracker42.example", NULL), VERDICT_DENY);
	ck_assert_int_eq(decide(p, "x.42.tracker42.example", NULL), VERDICT_PASS);
	ck_assert_int_eq(decide(p, "x.43.tracker43.example", NULL), VERDICT_DENY);
	ck_assert_int_eq(decide(p, "43.tracker43.example", NULL), VERDICT_PASS);
	fprintf(stderr, "policy: 1000000 rules loaded in %.2f s, table %zu MB\n", secs,
		rules_memory(p->rules) >> 20);
	policy_free(p);
	config_free(cfg);
	free(path);
}
END_TEST

START_TEST(audit_mode_keeps_the_rule_and_local_names)
{
	struct config *cfg;
	char rule[400];
	struct policy *p = build(
		"upstreams = [ \"192.0.2.1\" ];\n"
		"audit = true;\n"
		"allow = [ \"mcr.microsoft.com\" ];\n"
		"deny = [ \"*.blob.core.windows.net\" ];\n"
		"local = ( { name = \"mirror.lab\"; addresses = [ \"10.0.0.5\" ]; } );\n", &cfg);

	ck_assert_int_eq(decide(p, "mcr.microsoft.com", NULL), VERDICT_ALLOW);
	ck_assert_int_eq(decide(p, "x.blob.core.windows.net", rule), VERDICT_AUDIT);
	ck_rule_starts(rule, "deny *.blob.core.windows.net (");
	ck_assert_int_eq(decide(p, "unlisted.example", rule), VERDICT_AUDIT);
	ck_assert_str_eq(rule, "default: not on the allowlist");
	ck_assert_int_eq(decide(p, "mirror.lab", NULL), VERDICT_LOCAL);
	ck_assert_int_eq(decide(p, "_dns.resolver.arpa", NULL), VERDICT_LOCAL);
	ck_assert_str_eq(policy_verdict_name(VERDICT_AUDIT), "audit");
	policy_free(p);
	config_free(cfg);
}
END_TEST

Suite *policy_suite(void)
{
	Suite *s = suite_create("policy");
	TCase *tc = tcase_create("policy");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, precedence_table);
	tcase_add_test(tc, allowlist_mode_and_registries);
	tcase_add_test(tc, resolver_arpa_is_local_whatever_the_rules);
	tcase_add_test(tc, labels_holding_dot_or_nul_do_not_match);
	tcase_add_test(tc, bad_rule_lines_name_file_and_line);
	tcase_add_test(tc, endpoint_forms);
	tcase_add_test(tc, a_million_rules);
	tcase_add_test(tc, audit_mode_keeps_the_rule_and_local_names);
	tcase_add_test(tc, ecr_forms_and_names);
	tcase_add_test(tc, shared_registry_directive);
	suite_add_tcase(s, tc);
	return s;
}
