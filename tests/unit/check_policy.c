/* The policy matcher: precedence, case, labels that hold '.' or NUL, long
 * names, wildcard versus apex, registry forms, a million rules, and the
 * registries' names layered over the rules deciding as one merged table. */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check_suites.h"
#include "config.h"
#include "policy.h"
#include "regname.h"
#include "rules.h"
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

/*
 * The oracle for the layering: the decision as it was made when registries'
 * names were exact allow rules in the one rule table, after every rule file
 * and inline rule and before the local names.
 */
static void merged_decide(const struct rules *r, enum cfg_mode mode, const uint8_t *name,
			  size_t len, struct policy_decision *d)
{
	const struct rule_node *n = rules_find(r, name, len);

	d->local = -1;
	d->node = NULL;
	d->kind = -1;
	if (n && n->local >= 0) {
		d->verdict = VERDICT_LOCAL;
		d->local = n->local;
		d->node = n;
		return;
	}
	for (int k = RULE_EXACT_DENY; n; k = k == RULE_EXACT_DENY ? RULE_EXACT_ALLOW : -1) {
		if (k < 0)
			break;
		if (n->kinds & (1u << k)) {
			d->verdict = k == RULE_EXACT_DENY ? VERDICT_DENY : VERDICT_ALLOW;
			d->kind = k;
			d->node = n;
			return;
		}
	}
	while (name[0] != 0) {
		len -= (size_t)name[0] + 1;
		name += name[0] + 1;
		if (!(n = rules_find(r, name, len)))
			continue;
		for (int k = RULE_WILD_DENY; k >= RULE_WILD_ALLOW; k--)
			if (n->kinds & (1u << k)) {
				d->verdict = k == RULE_WILD_DENY ? VERDICT_DENY : VERDICT_ALLOW;
				d->kind = k;
				d->node = n;
				return;
			}
	}
	d->verdict = mode == MODE_ALLOWLIST ? VERDICT_DENY : VERDICT_PASS;
}

/* Rules of the layering test, in the order the configuration holds them. */
static const struct { bool allow; const char *name; } tie_rules[] = {
	{ true, "fabrikam.azurecr.io" },               /* a rule and a registry allow the same name */
	{ true, "*.westus.data.azurecr.io" },          /* a wildcard over a discovered name */
	{ true, "contoso.azurecr.io" },
	{ false, "*.azurecr.io" },                     /* every other registry */
	{ false, "contoso.eastus.data.azurecr.io" },   /* exact deny of a discovered endpoint */
	{ false, "fabrikam.westeurope.data.azurecr.io" }, /* exact deny of a configured endpoint */
	{ false, "*.contoso.azurecr.io" },             /* a wildcard below a login server */
	{ false, "*.geo.azurecr.io" },
	{ true, "contoso.northeurope.geo.azurecr.io" },
	{ false, "contoso.northeurope.geo.azurecr.io" }, /* allow and deny and a registry's allow */
	{ false, "contoso.westus.data.azurecr.io" },
	{ true, "contoso.westus.data.azurecr.io" },
};

static char *tie_config(enum cfg_mode mode)
{
	static char conf[4096];
	size_t n = (size_t)snprintf(conf, sizeof(conf), "upstreams = [ \"192.0.2.1\" ];\nmode = \"%s\";\n",
				    mode == MODE_ALLOWLIST ? "allowlist" : "filter");
	for (int allow = 1; allow >= 0; allow--) {
		n += (size_t)snprintf(conf + n, sizeof(conf) - n, "%s = [", allow ? "allow" : "deny");
		const char *sep = " ";
		for (size_t i = 0; i < sizeof(tie_rules) / sizeof(tie_rules[0]); i++)
			if (tie_rules[i].allow == allow) {
				n += (size_t)snprintf(conf + n, sizeof(conf) - n, "%s\"%s\"", sep, tie_rules[i].name);
				sep = ", ";
			}
		n += (size_t)snprintf(conf + n, sizeof(conf) - n, " ];\n");
	}
	snprintf(conf + n, sizeof(conf) - n,
		 "registries = (\n"
		 "  { login_server = \"contoso.azurecr.io\"; },\n"
		 "  { login_server = \"fabrikam.azurecr.io\";\n"
		 "    data_endpoints = [ \"fabrikam.westeurope.data.azurecr.io\", \"fabrikam.eastus.data.azurecr.io\" ]; }\n"
		 ");\n"
		 "local = ( { name = \"fabrikam.eastus.data.azurecr.io\"; addresses = [ \"10.0.0.5\" ]; } );\n");
	return conf;
}

/** The merged table of cfg and the discovered lists, built as policy_new once did. */
static struct rules *merged_table(const struct config *cfg, char **const *extra)
{
	struct rules *r = rules_new();
	char why[300], src[300];
	uint8_t wire[256];
	int s = rules_source(r, cfg->path);

	ck_assert_ptr_nonnull(r);
	for (int allow = 1; allow >= 0; allow--) {
		const struct cfg_str *list = allow ? cfg->allow : cfg->deny;
		for (size_t i = 0; i < (allow ? cfg->n_allow : cfg->n_deny); i++) {
			struct rule_origin o = { (uint16_t)s, (uint32_t)list[i].line };
			ck_assert_int_eq(rules_add(r, allow, list[i].s, o, why, sizeof(why)), 0);
		}
	}
	for (size_t i = 0; i < cfg->n_registries; i++) {
		const struct cfg_registry *reg = &cfg->registries[i];
		snprintf(src, sizeof(src), "registry %s", reg->login_server.s);
		struct rule_origin o = { (uint16_t)rules_source(r, src), (uint32_t)reg->login_server.line };
		int len = wire_name_from_str(reg->login_server.s, wire);
		ck_assert_int_eq(rules_add_wire(r, RULE_EXACT_ALLOW, wire, (size_t)len, o), 0);
		for (size_t j = 0; j < reg->n_data_endpoints; j++) {
			o.line = (uint32_t)reg->data_endpoints[j].line;
			len = wire_name_from_str(reg->data_endpoints[j].s, wire);
			ck_assert_int_eq(rules_add_wire(r, RULE_EXACT_ALLOW, wire, (size_t)len, o), 0);
		}
		snprintf(src, sizeof(src), "discovery %s", reg->login_server.s);
		struct rule_origin d = { (uint16_t)rules_source(r, src), 0 };
		for (char *const *e = extra && extra[i] ? extra[i] : NULL; e && *e; e++) {
			len = wire_name_from_str(*e, wire);
			ck_assert_int_eq(rules_add_wire(r, RULE_EXACT_ALLOW, wire, (size_t)len, d), 0);
		}
	}
	for (size_t i = 0; i < cfg->n_local; i++)
		ck_assert_int_eq(rules_set_local(r, cfg->local[i].name, (size_t)cfg->local[i].name_len,
						 (int32_t)i), 0);
	return r;
}

/** Every name of the test, a name below each, and each one's parents. */
static const char *const tie_names[] = {
	"contoso.azurecr.io", "fabrikam.azurecr.io", "x.contoso.azurecr.io", "attacker.azurecr.io",
	"azurecr.io", "contoso.eastus.data.azurecr.io", "contoso.westus.data.azurecr.io",
	"x.contoso.westus.data.azurecr.io", "other.westus.data.azurecr.io", "westus.data.azurecr.io",
	"contoso.northeurope.geo.azurecr.io", "contoso.westeurope.geo.azurecr.io",
	"fabrikam.westeurope.data.azurecr.io", "fabrikam.eastus.data.azurecr.io",
	"contoso.southindia.data.azurecr.io", "x.fabrikam.azurecr.io", "example.com",
	"ns.resolver.arpa", NULL,
};

/** Compare the layered policy with the merged table on every test name. */
static void check_layering(const struct policy *p, const struct rules *merged, enum cfg_mode mode)
{
	for (const char *const *q = tie_names; *q; q++) {
		uint8_t wire[256];
		int len = wire_name_from_str(*q, wire);
		struct policy_decision got, want;
		char rule[400];

		policy_decide(p, wire, (size_t)len, &got);
		policy_describe(p, &got, rule, sizeof(rule));
		if (strcmp(*q, "ns.resolver.arpa") == 0) {
			ck_assert_int_eq(got.verdict, VERDICT_LOCAL);   /* built in, before any table */
			continue;
		}
		merged_decide(merged, mode, wire, (size_t)len, &want);
		ck_assert_msg(got.verdict == want.verdict && got.kind == want.kind && got.local == want.local,
			      "%s: layered %s/%d (%s), merged %s/%d", *q, policy_verdict_name(got.verdict),
			      got.kind, rule, policy_verdict_name(want.verdict), want.kind);
		if (!want.node) {
			ck_assert_ptr_null(got.node);
			continue;
		}
		/* The same rule: its name and where it was written, as --explain shows it. */
		char name[WIRE_NAME_STRLEN], want_name[WIRE_NAME_STRLEN], at[320];
		wire_name_str(rules_node_name(merged, want.node), want_name);
		const struct rules *table = rules_holds(p->names, got.node) ? p->names : p->rules;
		wire_name_str(rules_node_name(table, got.node), name);
		ck_assert_msg(strcmp(name, want_name) == 0, "%s: decided by %s, merged by %s", *q, name, want_name);
		if (want.kind < 0)
			continue;
		const struct rule_origin *o = &want.node->origin[want.kind];
		if (o->line)
			snprintf(at, sizeof(at), "(%s:%u)", rules_source_name(merged, o->source), o->line);
		else
			snprintf(at, sizeof(at), "(%s)", rules_source_name(merged, o->source));
		ck_assert_msg(strstr(rule, at) != NULL, "%s: '%s' does not say %s", *q, rule, at);
	}
	ck_assert_uint_eq(policy_rule_count(p), rules_count(merged));
}

START_TEST(registry_names_decide_as_one_table)
{
	char *east[] = { "contoso.eastus.data.azurecr.io", "contoso.westus.data.azurecr.io",
			 "contoso.northeurope.geo.azurecr.io", NULL };
	char **extra[] = { east, NULL };

	for (int m = 0; m < 2; m++) {
		enum cfg_mode mode = m ? MODE_FILTER : MODE_ALLOWLIST;
		char *path = unit_tmpfile("layers.conf", tie_config(mode));
		struct config *cfg = config_load(path, err, sizeof(err));
		ck_assert_msg(cfg != NULL, "%s", err);
		struct policy *p = policy_new(cfg, (char **const *)extra, err, sizeof(err));
		ck_assert_msg(p != NULL, "%s", err);
		struct rules *merged = merged_table(cfg, (char **const *)extra);
		check_layering(p, merged, mode);

		/* The ties spelled out, as an operator reads them. */
		char rule[400];
		ck_assert_int_eq(decide(p, "contoso.eastus.data.azurecr.io", rule), VERDICT_DENY);
		ck_rule_starts(rule, "deny contoso.eastus.data.azurecr.io (");
		ck_assert_int_eq(decide(p, "fabrikam.westeurope.data.azurecr.io", rule), VERDICT_DENY);
		ck_assert_int_eq(decide(p, "contoso.northeurope.geo.azurecr.io", rule), VERDICT_DENY);
		ck_assert_int_eq(decide(p, "contoso.westus.data.azurecr.io", rule), VERDICT_DENY);
		ck_assert_int_eq(decide(p, "fabrikam.azurecr.io", rule), VERDICT_ALLOW);
		ck_assert_msg(strstr(rule, "(registry") == NULL, "the rule keeps its origin: %s", rule);
		ck_assert_int_eq(decide(p, "fabrikam.eastus.data.azurecr.io", NULL), VERDICT_LOCAL);
		ck_assert_int_eq(decide(p, "contoso.azurecr.io", NULL), VERDICT_ALLOW);
		ck_assert_int_eq(decide(p, "x.contoso.azurecr.io", NULL), VERDICT_DENY);

		/* A discovery change: other names over the same rules, still one table's answers. */
		char *south[] = { "contoso.southindia.data.azurecr.io", "contoso.westus.data.azurecr.io", NULL };
		char **extra2[] = { south, NULL };
		struct policy_names *names = policy_names_new(p, cfg, (char **const *)extra2, err, sizeof(err));
		ck_assert_msg(names != NULL, "%s", err);
		const struct rules *before = p->rules;
		policy_names_swap(p, names);
		ck_assert_ptr_eq(p->rules, before);
		policy_names_free(names);
		rules_free(merged);
		merged = merged_table(cfg, (char **const *)extra2);
		check_layering(p, merged, mode);
		ck_assert_int_eq(decide(p, "contoso.southindia.data.azurecr.io", rule), VERDICT_ALLOW);
		ck_assert_str_eq(rule, "allow contoso.southindia.data.azurecr.io (discovery contoso.azurecr.io)");
		ck_assert_uint_eq(p->registries[0].n_endpoints, 2);

		rules_free(merged);
		policy_free(p);
		config_free(cfg);
		free(path);
	}
}
END_TEST

START_TEST(registry_names_swap_without_the_rules)
{
	/* A discovery change costs what the registries' names cost: with a
	 * million rules, new names are built from the small table's inputs
	 * alone, and the rule table is the same object after. */
	struct config *cfg;
	char conf[512];
	char *path = unit_tmpfile("big.rules", "");
	FILE *f = fopen(path, "w");
	for (int i = 0; i < 200000; i++)
		fprintf(f, "deny r%d.big%d.example\n", i, i % 97);
	fprintf(f, "deny contoso.westus.data.azurecr.io\n");
	fclose(f);
	snprintf(conf, sizeof(conf), "upstreams = [ \"192.0.2.1\" ];\nmode = \"filter\";\nrules = [ \"%s\" ];\n"
		 "registries = ( { login_server = \"contoso.azurecr.io\"; } );\n", path);
	struct policy *p = build(conf, &cfg);
	size_t rules = policy_rule_count(p);
	char *list[] = { "contoso.eastus.data.azurecr.io", "contoso.westus.data.azurecr.io", NULL };
	char **extra[] = { list, NULL };
	struct policy_names *names = policy_names_new(p, cfg, (char **const *)extra, err, sizeof(err));
	ck_assert_msg(names != NULL, "%s", err);
	ck_assert_uint_eq(rules_count(names->table), 3);
	ck_assert_uint_eq(names->n_added, 3);   /* no rule allows them exactly: all count */
	policy_names_swap(p, names);
	ck_assert_uint_eq(policy_rule_count(p), rules + 2);
	ck_assert_int_eq(decide(p, "contoso.eastus.data.azurecr.io", NULL), VERDICT_ALLOW);
	ck_assert_int_eq(decide(p, "contoso.westus.data.azurecr.io", NULL), VERDICT_DENY);
	ck_assert_int_eq(decide(p, "r7.big7.example", NULL), VERDICT_DENY);
	/* The swap gave back the names it replaced: the configured login server alone. */
	ck_assert_uint_eq(rules_count(names->table), 1);
	ck_assert_uint_eq(names->registries[0].n_endpoints, 0);
	policy_names_free(names);
	policy_free(p);
	config_free(cfg);
	free(path);
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
	tcase_add_test(tc, registry_names_decide_as_one_table);
	tcase_add_test(tc, registry_names_swap_without_the_rules);
	suite_add_tcase(s, tc);
	return s;
}
