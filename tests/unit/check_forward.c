/* Per-zone upstreams (`forward`): which zone a name goes to, matched label
 * by label on wire names, and an error with file:line for every mistake in
 * a `forward` list. */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "check_suites.h"
#include "config.h"
#include "server.h"
#include "upstream_set.h"
#include "wire.h"

static char err[1024];

static struct config *load(const char *text)
{
	char *path = unit_tmpfile("forward.conf", text);
	struct config *cfg = config_load(path, err, sizeof(err));
	free(path);
	return cfg;
}

/** The zone a presentation name goes to: the forward zone's name, or "." */
static const char *zone_of(const struct config *cfg, const char *text)
{
	uint8_t name[WIRE_NAME_MAX + 1];
	int len = wire_name_from_str(text, name);

	ck_assert_int_gt(len, 0);
	const struct cfg_forward *f = config_forward_find(cfg, name, (size_t)len);
	return f ? f->name : ".";
}

static bool under(const char *name, const char *zone)
{
	uint8_t n[WIRE_NAME_MAX + 1], z[WIRE_NAME_MAX + 1];
	int nl = wire_name_from_str(name, n), zl = wire_name_from_str(zone, z);

	ck_assert(nl > 0 && zl > 0);
	return wire_name_under(n, (size_t)nl, z, (size_t)zl);
}

START_TEST(name_under_zone)
{
	ck_assert(under("privatelink.azurecr.io", "privatelink.azurecr.io"));
	ck_assert(under("contoso.privatelink.azurecr.io", "privatelink.azurecr.io"));
	ck_assert(under("CONTOSO.PrivateLink.azurecr.io", "privatelink.azurecr.io"));
	ck_assert(under("anything.example", "."));
	/* A zone starts at a label: no partial first label. */
	ck_assert(!under("xprivatelink.azurecr.io", "privatelink.azurecr.io"));
	ck_assert(!under("azurecr.io", "privatelink.azurecr.io"));
	ck_assert(!under("privatelink.azurecr.io.evil.example", "privatelink.azurecr.io"));
	/* A dot inside a label is a byte of that label, not a boundary. */
	ck_assert(!under("a\\.privatelink.azurecr.io", "privatelink.azurecr.io"));
	ck_assert(!under("contoso\\.azurecr.io", "azurecr.io"));
	ck_assert(!under("x.contoso\\.azurecr.io", "contoso.azurecr.io"));
	ck_assert(under("contoso\\.azurecr.io", "io"));
}
END_TEST

START_TEST(most_specific_zone)
{
	struct config *cfg = load(
		"upstreams = [ \"192.0.2.1\" ];\n"
		"forward = (\n"
		"  { zone = \"azurecr.io\"; upstreams = [ \"192.0.2.2\" ]; },\n"
		"  { zone = \"privatelink.azurecr.io\"; upstreams = [ \"10.1.0.4\", \"file:/etc/resolv.conf\" ]; },\n"
		"  { zone = \"eastus.data.privatelink.azurecr.io.\"; upstreams = [ \"10.1.0.5:5353\" ]; }\n"
		");\n");

	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_uint_eq(cfg->n_forward, 3);
	ck_assert_str_eq(cfg->forward[2].name, "eastus.data.privatelink.azurecr.io");
	ck_assert_uint_eq(cfg->forward[1].n_upstreams, 2);
	ck_assert_str_eq(cfg->forward[1].upstreams[1].file, "/etc/resolv.conf");
	ck_assert_int_eq(cfg->forward[1].line, 4);

	ck_assert_str_eq(zone_of(cfg, "contoso.azurecr.io"), "azurecr.io");
	ck_assert_str_eq(zone_of(cfg, "privatelink.azurecr.io"), "privatelink.azurecr.io");
	ck_assert_str_eq(zone_of(cfg, "contoso.privatelink.azurecr.io"), "privatelink.azurecr.io");
	ck_assert_str_eq(zone_of(cfg, "Contoso.EastUS.Data.PrivateLink.AzureCR.io"),
			 "eastus.data.privatelink.azurecr.io");
	/* Longest match is by labels, whatever the order in the file. */
	ck_assert_str_eq(zone_of(cfg, "westus.data.privatelink.azurecr.io"), "privatelink.azurecr.io");
	/* Not at a label boundary: the next zone up, or the default. */
	ck_assert_str_eq(zone_of(cfg, "xprivatelink.azurecr.io"), "azurecr.io");
	ck_assert_str_eq(zone_of(cfg, "xazurecr.io"), ".");
	ck_assert_str_eq(zone_of(cfg, "mcr.microsoft.com"), ".");
	ck_assert_str_eq(zone_of(cfg, "io"), ".");
	config_free(cfg);
}
END_TEST

static void expect_error(const char *text, int line, const char *message)
{
	char where[64];
	struct config *cfg = load(text);

	ck_assert_msg(cfg == NULL, "accepted: %s", text);
	snprintf(where, sizeof(where), "forward.conf:%d: ", line);
	ck_assert_msg(strstr(err, where) != NULL, "'%s' lacks '%s'", err, where);
	ck_assert_msg(strstr(err, message) != NULL, "'%s' lacks '%s'", err, message);
}

START_TEST(forward_errors)
{
	const char *up = "upstreams = [ \"192.0.2.1\" ];\n";
	char text[1024];

#define E(body, line, msg)                                         \
	snprintf(text, sizeof(text), "%s%s", up, body);             \
	expect_error(text, line, msg)

	E("forward = ( { zone = \"a.example\"; upstreams = [ \"10.0.0.1\" ]; },\n"
	  "  { zone = \"A.example.\"; upstreams = [ \"10.0.0.2\" ]; } );\n",
	  3, "zone 'A.example.' is already forwarded (line 2)");
	E("forward = ( { zone = \"a..example\"; upstreams = [ \"10.0.0.1\" ]; } );\n", 2,
	  "zone 'a..example' is not a domain name");
	E("forward = ( { zone = \"*.example\"; upstreams = [ \"10.0.0.1\" ]; } );\n", 2,
	  "is not a domain name");
	E("forward = ( { zone = \".\"; upstreams = [ \"10.0.0.1\" ]; } );\n", 2,
	  "zone '.' is what 'upstreams' serves");
	E("forward = ( { zone = \"a.example\"; upstreams = [ ]; } );\n", 2,
	  "'upstreams' needs at least one server");
	E("forward = ( { zone = \"a.example\"; } );\n", 2, "needs 'upstreams'");
	E("forward = ( { upstreams = [ \"10.0.0.1\" ]; } );\n", 2, "needs a 'zone'");
	E("forward = ( { zone = \"a.example\"; upstreams = [ \"dns.example\" ]; } );\n", 2,
	  "upstream 'dns.example' is not an address[:port] or file:PATH");
	E("forward = ( { zone = \"a.example\"; upstreams = [ \"file:\" ]; } );\n", 2, "needs a path");
	E("forward = ( { zone = \"a.example\"; servers = [ \"10.0.0.1\" ]; } );\n", 2,
	  "unknown key 'servers' in forward");
	E("forward = [ \"a.example\" ];\n", 2, "each 'forward' entry must be a group");
	E("forward = \"a.example\";\n", 2, "'forward' must be a list");
#undef E
}
END_TEST

/* ---- the sets behind the zones, across reloads ---- */

static struct upstream_set *set_for(const struct upstream_sets *ss, const char *text)
{
	uint8_t name[WIRE_NAME_MAX + 1];
	int len = wire_name_from_str(text, name);

	ck_assert_int_gt(len, 0);
	return upstream_sets_find(ss, name, (size_t)len);
}

static int rebuilt_calls;

static void count_rebuilt(void *arg)
{
	(void)arg;
	rebuilt_calls++;
}

START_TEST(sets_follow_reloads)
{
	static struct server srv;
	struct upstream_sets ss;
	struct config *one = load(
		"listen = [ \"127.0.0.1:5399\" ];\n"
		"upstreams = [ \"192.0.2.1\" ];\n"
		"forward = ( { zone = \"privatelink.azurecr.io\"; upstreams = [ \"10.1.0.4\", \"10.1.0.5\" ]; },\n"
		"  { zone = \"corp.example\"; upstreams = [ \"127.0.0.1:5399\" ]; } );\n");
	struct config *two = load(
		"listen = [ \"127.0.0.1:5399\" ];\n"
		"upstreams = [ \"192.0.2.1\" ];\n"
		"forward = ( { zone = \"lab.example\"; upstreams = [ \"10.2.0.1\" ]; },\n"
		"  { zone = \"privatelink.azurecr.io\"; upstreams = [ \"10.1.0.5\" ]; } );\n");

	ck_assert_msg(one && two, "%s", err);
	memset(&srv, 0, sizeof(srv));
	srv.loop = ev_loop_new(EVFLAG_AUTO);
	ck_assert_int_eq(upstream_sets_init(&ss, &srv), 0);
	ss.rebuilt = count_rebuilt;
	ck_assert_int_eq(upstream_sets_configure(&ss, one, err, sizeof(err)), 0);
	ck_assert_int_eq(rebuilt_calls, 1);   /* once per reload, not once per zone */

	struct upstream_set *pl = set_for(&ss, "contoso.privatelink.azurecr.io");
	struct upstream_set *corp = set_for(&ss, "git.corp.example");
	ck_assert_str_eq(pl->name, "privatelink.azurecr.io");
	ck_assert_uint_eq(pl->sv.n, 2);
	ck_assert_str_eq(set_for(&ss, "xprivatelink.azurecr.io")->name, ".");
	ck_assert_uint_eq(set_for(&ss, "mcr.microsoft.com")->sv.n, 1);
	/* Our own listener is no server: the zone has none, the others do. */
	ck_assert_uint_eq(corp->sv.n, 0);

	/* 10.1.0.5 has an RTT; a question to corp.example is in flight. */
	upstream_server_sample(&pl->sv.list[1], 0.02, 100.0);
	upstream_set_hold(corp);
	ck_assert_int_eq(upstream_sets_configure(&ss, two, err, sizeof(err)), 0);
	ck_assert_int_eq(rebuilt_calls, 2);

	/* The zone that stays keeps its set, and the server that stays its RTT. */
	ck_assert_ptr_eq(set_for(&ss, "contoso.privatelink.azurecr.io"), pl);
	ck_assert_uint_eq(pl->sv.n, 1);
	ck_assert(pl->sv.list[0].measured);
	ck_assert_double_eq_tol(pl->sv.list[0].srtt, 0.02, 1e-9);
	ck_assert_str_eq(set_for(&ss, "a.lab.example")->name, "lab.example");
	/* The removed zone's names go to `upstreams`; its set waits for its question. */
	ck_assert_str_eq(set_for(&ss, "git.corp.example")->name, ".");
	ck_assert_ptr_eq(ss.retired, corp);
	ck_assert_uint_eq(corp->sv.n, 0);
	upstream_set_release(&ss, corp);   /* freed here: ASan says so if not */
	ck_assert_ptr_null(ss.retired);

	upstream_sets_closing(&ss);
	upstream_sets_cleanup(&ss);
	ev_loop_destroy(srv.loop);
	config_free(one);
	config_free(two);
}
END_TEST

Suite *forward_suite(void)
{
	Suite *s = suite_create("forward");
	TCase *tc = tcase_create("forward");
	tcase_add_test(tc, name_under_zone);
	tcase_add_test(tc, most_specific_zone);
	tcase_add_test(tc, forward_errors);
	tcase_add_test(tc, sets_follow_reloads);
	suite_add_tcase(s, tc);
	return s;
}
