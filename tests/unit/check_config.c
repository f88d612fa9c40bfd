/* The configuration loader: defaults, and an error with file:line for
 * every kind of mistake an operator makes. */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>

#include "address.h"
#include "check_suites.h"
#include "config.h"

static char err[1024];

static struct config *load(const char *text)
{
	char *path = unit_tmpfile("acrdnsd.conf", text);
	struct config *cfg = config_load(path, err, sizeof(err));
	free(path);
	return cfg;
}

/* The error names the file, the line and the message. */
static void expect_error(const char *text, int line, const char *message)
{
	char where[64];
	struct config *cfg = load(text);

	ck_assert_msg(cfg == NULL, "accepted: %s", text);
	if (line)
		snprintf(where, sizeof(where), "acrdnsd.conf:%d: ", line);
	else
		snprintf(where, sizeof(where), "acrdnsd.conf: ");
	ck_assert_msg(strstr(err, where) != NULL, "'%s' lacks '%s'", err, where);
	ck_assert_msg(strstr(err, message) != NULL, "'%s' lacks '%s'", err, message);
}

START_TEST(defaults)
{
	struct config *cfg = load("upstreams = [ \"192.0.2.53\" ];\n");

	ck_assert_ptr_nonnull(cfg);
	ck_assert_int_eq(cfg->mode, MODE_ALLOWLIST);
	ck_assert_int_eq(cfg->deny_response, DENY_NXDOMAIN);
	ck_assert_uint_eq(cfg->n_listen, 2);
	ck_assert_uint_eq(cfg->n_access, 2);
	ck_assert_uint_eq(cfg->cache_size, 64 * 1024 * 1024);
	ck_assert_uint_eq(cfg->max_ttl, 86400);
	ck_assert_uint_eq(cfg->negative_ttl, 300);
	ck_assert_uint_eq(cfg->stale_ttl, 86400);
	ck_assert_int_eq(cfg->log_queries, QLOG_DENIED);
	char buf[64];
	address_str((struct sockaddr *)&cfg->upstreams[0].addr.ss, buf, sizeof(buf));
	ck_assert_str_eq(buf, "192.0.2.53#53");
	config_free(cfg);
}
END_TEST

START_TEST(full_example)
{
	struct config *cfg = load(
		"listen = [ \"127.0.0.1:5353\", \"[::1]:5353\" ];\n"
		"access = [ \"10.0.0.0/8\", \"fd00::/8\" ];\n"
		"upstreams = [ \"168.63.129.16\", \"[2001:db8::1]:5300\", \"file:/etc/resolv.conf\" ];\n"
		"mode = \"filter\"; deny_response = \"refused\";\n"
		"allow = [ \"mcr.microsoft.com\" ]; deny = [ \"*.blob.core.windows.net\" ];\n"
		"local = ( { name = \"contoso.azurecr.io\"; addresses = [ \"10.20.0.5\", \"fd00::5\" ]; ttl = 60; } );\n"
		"registries = ( { login_server = \"contoso.azurecr.io\";\n"
		"  data_endpoints = [ \"contoso.eastus.data.azurecr.io\", \"contoso.westus.geo.azurecr.io\" ]; } );\n"
		"cache = { size = \"1M\"; min_ttl = 5; max_ttl = 600; negative_ttl = 30; stale_ttl = 0; };\n"
		"log = { level = \"debug\"; queries = \"all\"; };\n"
		"state_dir = \"/tmp/x\"; control_socket = \"/tmp/x.sock\";\n");

	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_uint_eq(cfg->n_upstreams, 3);
	ck_assert_str_eq(cfg->upstreams[2].file, "/etc/resolv.conf");
	ck_assert_uint_eq(cfg->cache_size, 1024 * 1024);
	ck_assert_uint_eq(cfg->local[0].n4, 1);
	ck_assert_uint_eq(cfg->local[0].n6, 1);
	ck_assert_uint_eq(cfg->registries[0].n_data_endpoints, 2);
	ck_assert_int_eq(cfg->log_level, LOG_LVL_DEBUG);
	config_free(cfg);
}
END_TEST

START_TEST(errors)
{
	expect_error("upstreams = [ \"192.0.2.1\" ];\nfoo = 1;\n", 2, "unknown key 'foo'");
	expect_error("listen = [ \"127.0.0.1:53\" ];\n", 0, "'upstreams' is missing");
	expect_error("upstreams = [ ];\n", 1, "at least one server");
	expect_error("upstreams = [ \"dns.example\" ];\n", 1, "is not an address[:port] or file:PATH");
	expect_error("upstreams = [ \"file:\" ];\n", 1, "needs a path");
	expect_error("upstreams = [ \"192.0.2.1:70000\" ];\n", 1, "not an address");
	expect_error("upstreams = [ \"192.0.2.1\" ];\nnftables = { table = \"acrdns\"; };\n", 2,
		     "expected FAMILY NAME");
	expect_error("upstreams = [ \"192.0.2.1\" ];\nnftables = { table = \"arp acrdns\"; };\n", 2,
		     "the family must be ip, ip6 or inet");
	expect_error("upstreams = [ \"192.0.2.1\" ];\nnftables = { set4 = \"a b\"; };\n", 2,
		     "'set4' is 'a b'");
	expect_error("upstreams = [ \"192.0.2.1\" ];\nnftables = { grace = -5; };\n", 2,
		     "must be between 0 and");
	expect_error("upstreams = [ \"192.0.2.1\" ];\nnftables = { sets = 1; };\n", 2,
		     "unknown key 'sets' in nftables");
	expect_error("upstreams = [ \"192.0.2.1\" ];\nuser = \"\";\n", 2, "'user' is empty");
	expect_error("upstreams = [ \"192.0.2.1\" ];\nworkers = 65;\n", 2, "must be between 0 and 64");
	expect_error("upstreams = [ \"192.0.2.1\" ];\nmetrics_listen = \"any\";\n", 2,
		     "'metrics_listen' is 'any'");
	expect_error("upstreams = [ \"192.0.2.1\" ];\nlog = { format = \"xml\"; };\n", 2,
		     "expected text | json");
	/* found by fuzz_config: crashed in config_free() */
	expect_error("upstreams = ( { names = [ \"10.0.0.1\" ]; } );\n", 1, "must be a list of strings");
	expect_error("upstreams = [ \"192.0.2.1\" ];\nlisten = [ \"localhost:53\" ];\n", 2,
		     "not an address[:port]");
	expect_error("upstreams = [ \"192.0.2.1\" ];\nlisten = [ \"127.0.0.1\", \"127.0.0.1:53\" ];\n", 2,
		     "'127.0.0.1:53' is listed twice");
	expect_error("upstreams = [ \"192.0.2.1\" ];\nlisten = \"127.0.0.1\";\n", 2,
		     "must be a list of strings");
	expect_error("upstreams = [ \"192.0.2.1\" ];\naccess = [ \"10.0.0.0/33\" ];\n", 2,
		     "is not a network");
	expect_error("upstreams = [ \"192.0.2.1\" ];\nmode = \"open\";\n", 2,
		     "'mode' is 'open'; expected allowlist | filter");
	expect_error("upstreams = [ \"192.0.2.1\" ];\ndeny_response = \"drop\";\n", 2,
		     "expected nxdomain | nodata | refused");
	expect_error("upstreams = [ \"192.0.2.1\" ];\ncache = { size = \"lots\"; };\n", 2,
		     "expected a byte count");
	expect_error("upstreams = [ \"192.0.2.1\" ];\ncache = { size = 100; };\n", 2, "at least 64K");
	expect_error("upstreams = [ \"192.0.2.1\" ];\ncache = { ttl = 5; };\n", 2,
		     "unknown key 'ttl' in cache");
	expect_error("upstreams = [ \"192.0.2.1\" ];\ncache = { min_ttl = 10; max_ttl = 5; };\n", 2,
		     "above 'max_ttl'");
	expect_error("upstreams = [ \"192.0.2.1\" ];\ncache = { max_ttl = -1; };\n", 2,
		     "must be between 0 and");
	expect_error("upstreams = [ \"192.0.2.1\" ];\nlog = { level = \"loud\"; };\n", 2,
		     "'level' is 'loud'");
	expect_error("upstreams = [ \"192.0.2.1\" ];\nlog = { queries = \"some\"; };\n", 2,
		     "expected none | denied | all");
	expect_error("upstreams = [ \"192.0.2.1\" ];\nstate_dir = \"var/lib\";\n", 2,
		     "must be an absolute path");
	expect_error("upstreams = [ \"192.0.2.1\" ];\nlocal = ( { name = \"a.example\"; } );\n", 2,
		     "needs 'addresses'");
	expect_error("upstreams = [ \"192.0.2.1\" ];\n"
		     "local = ( { name = \"a.example\"; addresses = [ \"10.0.0.300\" ]; } );\n", 2,
		     "not an IPv4 or IPv6 address");
	expect_error("upstreams = [ \"192.0.2.1\" ];\nlocal = ( { name = \"a..example\"; addresses = [ \"10.0.0.1\" ]; } );\n",
		     2, "is not a domain name");
	expect_error("upstreams = [ \"192.0.2.1\" ];\nregistries = ( { login_server = \"contoso.example.com\"; } );\n",
		     2, "is not of the form <registry>.azurecr.io");
	expect_error("upstreams = [ \"192.0.2.1\" ];\nregistries = ( { login_server = \"contoso.azurecr.io\";\n"
		     "  data_endpoints = [ \"evil.eastus.data.azurecr.io\" ]; } );\n", 3,
		     "is not one of registry 'contoso.azurecr.io'");
	expect_error("upstreams = [ \"192.0.2.1\" ];\nregistries = ( { login_server = \"contoso.azurecr.io\";\n"
		     "  data_endpoints = [ \"contoso.blob.core.windows.net\" ]; } );\n", 3,
		     "is not one of registry");
	expect_error("upstreams = [ \"192.0.2.1\" ];\nregistries = ( { login_server = \"contoso.azurecr.io\";\n"
		     "  discovery = { source = \"carrier-pigeon\"; }; } );\n", 3,
		     "expected static | file | command | arm");
	expect_error("upstreams = [ \"192.0.2.1\" ];\nregistries = ( { login_server = \"contoso.azurecr.io\";\n"
		     "  discovery = { source = \"file\"; }; } );\n", 3, "needs 'path'");
	expect_error("upstreams = [ \"192.0.2.1\" ;\nmode = \"filter\";\n", 1, "syntax error");
	expect_error("upstreams = [ \"192.0.2.1\" ];\nrate_limit = { burst = 5; };\n", 2, "'rate_limit' needs 'qps'");
	expect_error("upstreams = [ \"192.0.2.1\" ];\nrate_limit = { qps = 0; };\n", 2, "'qps' must be at least 1");
	expect_error("upstreams = [ \"192.0.2.1\" ];\nrate_limit = { qps = 5; action = \"tarpit\"; };\n", 2,
		     "expected refuse | drop");
	expect_error("upstreams = [ \"192.0.2.1\" ];\nrate_limit = { qps = 5; exempt = [ \"10/8\" ]; };\n", 2,
		     "'10/8' is not a network");
	expect_error("upstreams = [ \"192.0.2.1\" ];\nrate_limit = 5;\n", 2, "'rate_limit' must be a group");
	expect_error("upstreams = [ \"192.0.2.1\" ];\ntcp = { max_per_client = 0; };\n", 2, "limits must be at least 1");
	expect_error("upstreams = [ \"192.0.2.1\" ];\ntcp = { timeout = 5; };\n", 2, "unknown key 'timeout' in tcp");
	expect_error("upstreams = [ \"192.0.2.1\" ];\ncache = 5;\n", 2, "'cache' must be a group");
	expect_error("upstreams = [ \"192.0.2.1\" ];\nlog = { level = 3; };\n", 2, "'level' must be a string");
	expect_error("upstreams = [ \"192.0.2.1\" ];\ncontrol_socket = \"run/x.sock\";\n", 2,
		     "'control_socket' must be an absolute path");
	expect_error("upstreams = [ \"192.0.2.1\" ];\ndeny_ttl = 100000;\n", 2, "'deny_ttl' must be between 0 and 86400");
	expect_error("upstreams = [ \"192.0.2.1\" ];\nlocal = ( { name = \"a.lab\"; addresses = [ \"10.0.0.1\" ]; },\n"
		     "          { name = \"A.lab.\"; addresses = [ \"10.0.0.2\" ]; } );\n", 3, "is already a local name (line 2)");
	expect_error("upstreams = [ \"192.0.2.1\" ];\nlocal = ( { name = \"*.lab\"; addresses = [ \"10.0.0.1\" ]; } );\n",
		     2, "is not a domain name");
	expect_error("upstreams = [ \"192.0.2.1\" ];\nregistries = ( { data_endpoints = [ ]; } );\n", 2,
		     "registry needs a 'login_server'");
	expect_error("upstreams = [ \"192.0.2.1\" ];\nregistries = ( { login_server = \"contoso.azurecr.io\"; },\n"
		     "  { login_server = \"Contoso.azurecr.io\"; } );\n", 3, "is already configured (line 2)");
	expect_error("upstreams = [ \"192.0.2.1\" ];\nregistries = ( { login_server = \"contoso.azurecr.io\";\n"
		     "  discovery = { source = \"file\"; path = \"/x\"; interval = 1; }; } );\n", 3, "at least 5 seconds");
	expect_error("upstreams = [ \"192.0.2.1\" ];\nregistries = ( { login_server = \"contoso.azurecr.io\";\n"
		     "  discovery = { source = \"command\"; }; } );\n", 3, "needs 'command'");
	expect_error("upstreams = [ \"192.0.2.1\" ];\nregistries = ( { login_server = \"contoso.azurecr.io\";\n"
		     "  discovery = { source = \"command\"; command = [ ]; }; } );\n", 3, "needs at least the program");
	expect_error("upstreams = [ \"192.0.2.1\" ];\nregistries = ( { login_server = \"contoso.azurecr.io\";\n"
		     "  discovery = { source = \"arm\"; resource_id = \"/subscriptions/x\"; arm_endpoint = \"ftp://x\"; }; } );\n",
		     3, "is not an http:// or https:// URL");
	expect_error("upstreams = [ \"192.0.2.1\" ];\nregistries = ( { login_server = \"contoso.azurecr.io\";\n"
		     "  discovery = { source = \"file\"; path = \"/x\"; colour = \"blue\"; }; } );\n", 3,
		     "unknown key 'colour' in discovery");
	expect_error("upstreams = [ \"192.0.2.1\" ];\nregistries = ( \"contoso.azurecr.io\" );\n", 2,
		     "each registry must be a group");
	expect_error("upstreams = [ \"192.0.2.1\" ];\nallow = \"a.example\";\n", 2, "'allow' must be a list of strings");
	expect_error("upstreams = [ \"192.0.2.1\" ];\nrules = [ 7 ];\n", 2, "'rules' must be a list of strings");
}
END_TEST

START_TEST(addresses_and_networks)
{
	struct cfg_addr a;
	struct cfg_net n;
	char buf[64];

	ck_assert_int_eq(address_parse("[::1]:5353", 53, &a), 0);
	address_str((struct sockaddr *)&a.ss, buf, sizeof(buf));
	ck_assert_str_eq(buf, "::1#5353");
	ck_assert_int_eq(address_parse("2001:db8::1", 53, &a), 0);
	address_str((struct sockaddr *)&a.ss, buf, sizeof(buf));
	ck_assert_str_eq(buf, "2001:db8::1#53");
	ck_assert_int_eq(address_parse("[::1", 53, &a), -1);
	ck_assert_int_eq(address_parse("1.2.3.4:", 53, &a), -1);

	ck_assert_int_eq(address_parse_net("10.1.0.0/16", &n), 0);
	ck_assert_int_eq(address_parse("10.1.200.3", 53, &a), 0);
	ck_assert(address_net_contains(&n, (struct sockaddr *)&a.ss));
	ck_assert_int_eq(address_parse("10.2.0.1", 53, &a), 0);
	ck_assert(!address_net_contains(&n, (struct sockaddr *)&a.ss));
	/* IPv4-mapped IPv6 clients are matched as IPv4 */
	ck_assert_int_eq(address_parse("::ffff:10.1.2.3", 53, &a), 0);
	ck_assert(address_net_contains(&n, (struct sockaddr *)&a.ss));
	ck_assert_int_eq(address_parse_net("fd00::/8", &n), 0);
	ck_assert_int_eq(address_parse("fdab::1", 53, &a), 0);
	ck_assert(address_net_contains(&n, (struct sockaddr *)&a.ss));
	ck_assert_int_eq(address_parse_net("0.0.0.0/0", &n), 0);
	ck_assert(!address_net_contains(&n, (struct sockaddr *)&a.ss));
}
END_TEST

/* Every key the loader knows is in acrdnsd.conf(5): a new key without its
 * manual entry fails the build's tests. */
START_TEST(every_key_documented)
{
	const char *srcdir = getenv("ACRDNS_SRCDIR");
	char path[4096];
	static char man[262144];

	snprintf(path, sizeof(path), "%s/man/acrdnsd.conf.5", srcdir ? srcdir : ".");
	FILE *f = fopen(path, "r");
	ck_assert_msg(f != NULL, "cannot read %s", path);
	size_t n = fread(man, 1, sizeof(man) - 1, f);
	fclose(f);
	man[n] = '\0';
	for (const char *const *k = config_keys; *k; k++) {
		const char *key = strchr(*k, '.') ? strchr(*k, '.') + 1 : *k;
		char bold[128];
		snprintf(bold, sizeof(bold), ".B %s", key);
		bool found = strstr(man, bold) != NULL;
		snprintf(bold, sizeof(bold), ".BR %s ", key);
		found |= strstr(man, bold) != NULL;
		ck_assert_msg(found, "configuration key '%s' is not in acrdnsd.conf(5)", *k);
	}
}
END_TEST

Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("config");
	tcase_add_test(tc, defaults);
	tcase_add_test(tc, full_example);
	tcase_add_test(tc, errors);
	tcase_add_test(tc, addresses_and_networks);
	tcase_add_test(tc, every_key_documented);
	suite_add_tcase(s, tc);
	return s;
}
