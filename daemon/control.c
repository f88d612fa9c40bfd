/**
 * \file control.c
 * Control socket requests, on the event loop like everything else.  A
 * request is one line of at most CTL_LINE_MAX bytes; a client that does
 * not send it within CTL_TIMEOUT seconds, or does not read its answer, is
 * dropped.  Answers are built whole, then written without blocking.  A
 * reload is answered later, once the configuration it read is live or has
 * failed: the connection waits for it without a deadline of its own (the
 * build is off the loop; acrdnsctl gives up by itself).
 */
#include "autoconf.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "address.h"
#include "audit.h"
#include "cache.h"
#include "control.h"
#include "discovery.h"
#include "failcache.h"
#include "health.h"
#include "loopdetect.h"
#include "log.h"
#include "metrics.h"
#include "nft.h"
#include "policy.h"
#include "reload.h"
#include "server.h"
#include "text.h"
#include "upstream.h"
#include "wire.h"
#include "worker.h"

#define CTL_LINE_MAX 1024
#define CTL_TIMEOUT 5.0

struct ctl_conn {
	struct ctl_conn *next;
	struct control *ctl;
	int fd;
	ev_io io;
	ev_timer timer;
	char in[CTL_LINE_MAX + 1];
	size_t in_len;
	char *out;
	size_t out_len, out_off;
	struct reload_waiter reload;  /**< while it waits for a reload */
	bool reloading, json;
};

struct control {
	struct server *srv;
	char *path;
	int fd;
	ev_io io;
	struct ctl_conn *conns;
};

/* ---- answers ---- */

static char *json_answer(json_t *j)
{
	char *s = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
	char *out = NULL;

	json_decref(j);
	if (s && (out = malloc(strlen(s) + 2)))
		sprintf(out, "%s\n", s);
	free(s);
	return out;
}

static char *error_answer(bool json, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *error_answer(bool json, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (json)
		return json_answer(json_pack("{s:s}", "error", msg));
	struct text t = { 0 };
	text_put(&t, "error: %s\n", msg);
	return t.buf;
}

struct status_loops {
	json_t *arr;     /**< JSON: the array to fill */
	struct text *t;  /**< text: the answer to add lines to */
};

/** One upstream found to be a loop: a status line or a JSON array element. */
static void put_loop(void *arg, const struct cfg_addr *server)
{
	char name[64];
	struct status_loops *x = arg;

	address_str((const struct sockaddr *)&server->ss, name, sizeof(name));
	if (x->arr)
		json_array_append_new(x->arr, json_string(name));
	else
		text_put(x->t, "upstream loop: %s leads back to acrdnsd; dropped\n", name);
}

static char *status(struct server *s, bool json)
{
	double up = ev_now(s->loop) - s->started;
	const struct config *cfg = s->cfg;
	char why[400];
	bool ready = health_ready(s, why, sizeof(why));

	size_t idle, sockets = upstream_sockets(s->up, &idle);

	if (json) {
		json_t *o = json_pack("{s:s,s:s,s:i,s:i,s:s,s:s,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i}",
			"version", PACKAGE_VERSION, "config", cfg->path, "uptime", (json_int_t)up,
			"workers", (json_int_t)workers_count(s->workers) + 1,
			"mode", cfg->mode == MODE_ALLOWLIST ? "allowlist" : "filter",
			"audit", cfg->audit ? "on" : "off",
			"rules", (json_int_t)policy_rule_count(s->policy),
			"registries", (json_int_t)s->policy->n_registries,
			"upstreams", (json_int_t)upstream_count(s->up),
			"cache_entries", (json_int_t)cache_entries(s->cache),
			"cache_bytes", (json_int_t)cache_bytes(s->cache),
			"inflight", (json_int_t)upstream_inflight(s->up),
			"upstream_sockets", (json_int_t)sockets,
			"upstream_sockets_idle", (json_int_t)idle,
			"tcp_connections", (json_int_t)s->tcp_conns);
		struct status_loops x = { json_array(), NULL };
		loopdetect_each_loop(s->loopdetect, put_loop, &x);
		json_t *zones = json_object();
		for (size_t i = 0; zones && i < cfg->n_forward; i++)
			json_object_set_new(zones, cfg->forward[i].name,
					    json_integer((json_int_t)upstream_zone_count(s->up, cfg->forward[i].zone,
											 (size_t)cfg->forward[i].zone_len)));
		if (o && zones)
			json_object_set_new(o, "forward", zones);
		else
			json_decref(zones);
		if (o) {
			json_object_set_new(o, "upstream_loops", x.arr ? x.arr : json_array());
			json_object_set_new(o, "ready", json_boolean(ready));
			json_object_set_new(o, "not_ready", ready ? json_null() : json_string(why));
		} else {
			json_decref(x.arr);
		}
		return json_answer(o);
	}
	struct text t = { 0 };
	text_put(&t, "acrdnsd %s, up %.0f s\nevent loops: %zu\nconfig: %s\nmode: %s%s\nrules: %zu\n"
	    "registries: %zu\n"
	    "upstream servers: %zu\ncache: %zu entries, %zu bytes of %" PRIu64 "\n"
	    "questions in flight: %zu\nupstream sockets: %zu open, %zu idle\ntcp connections: %u\n",
	    PACKAGE_VERSION, up,
	    workers_count(s->workers) + 1, cfg->path,
	    cfg->mode == MODE_ALLOWLIST ? "allowlist" : "filter",
	    cfg->audit ? " (audit: nothing is denied; see acrdnsctl audit)" : "", policy_rule_count(s->policy),
	    s->policy->n_registries, upstream_count(s->up), cache_entries(s->cache),
	    cache_bytes(s->cache), cfg->cache_size, upstream_inflight(s->up), sockets, idle,
	    s->tcp_conns);
	for (size_t i = 0; i < cfg->n_forward; i++) {
		const struct cfg_forward *f = &cfg->forward[i];
		size_t n = upstream_zone_count(s->up, f->zone, (size_t)f->zone_len);
		text_put(&t, "forward zone %s: %zu upstream servers%s\n", f->name, n,
			 n ? "" : " (none usable: its names get SERVFAIL or stale answers)");
	}
	struct status_loops x = { NULL, &t };
	loopdetect_each_loop(s->loopdetect, put_loop, &x);
	if (upstream_count(s->up) == 0)
		text_put(&t, "no usable upstream server: every forwarded query gets SERVFAIL\n");
	text_put(&t, "ready: %s%s\n", ready ? "yes" : "no: ", ready ? "" : why);
	return t.buf;
}

/** `ready`: one line, for acrdnsctl wait-ready; "ready" or "not ready: REASON". */
static char *readiness(struct server *s, bool json)
{
	char why[400];
	bool ready = health_ready(s, why, sizeof(why));

	if (json)
		return json_answer(json_pack("{s:b,s:s}", "ready", ready, "reason", ready ? "" : why));
	struct text t = { 0 };
	if (ready)
		text_put(&t, "ready\n");
	else
		text_put(&t, "not ready: %s\n", why);
	return t.buf;
}

static char *stats(struct server *s, bool json)
{
	struct stats total;

	workers_total(s, &total);
	if (json) {
		json_t *o = json_object();
		for (const struct stats_field *f = stats_fields; o && f->name; f++)
			json_object_set_new(o, f->name, json_integer((json_int_t)stats_get(&total, f)));
		return json_answer(o);
	}
	struct text t = { 0 };
	for (const struct stats_field *f = stats_fields; f->name; f++)
		text_put(&t, "%s %" PRIu64 "\n", f->name, stats_get(&total, f));
	return t.buf;
}

struct endpoints_ctx {
	const struct policy_registry *reg;
	const struct discovery_info *found;
	struct discovery_info copy;
};

static void find_info(void *arg, const struct discovery_info *i)
{
	struct endpoints_ctx *x = arg;

	if (strcasecmp(i->login, x->reg->login_server) == 0) {
		x->copy = *i;
		x->found = &x->copy;
	}
}

static char *endpoints(struct server *s, bool json)
{
	struct text t = { 0 };
	json_t *arr = json ? json_array() : NULL;

	for (size_t i = 0; i < s->policy->n_registries; i++) {
		const struct policy_registry *r = &s->policy->registries[i];
		struct endpoints_ctx x = { r, NULL, { 0 } };
		char when[128] = "never";
		discovery_each(s->disc, find_info, &x);
		if (x.found && x.found->last_success)
			strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime(&x.found->last_success));
		if (json) {
			json_t *eps = json_array();
			for (size_t j = 0; j < r->n_endpoints; j++)
				json_array_append_new(eps, json_string(r->endpoints[j]));
			json_t *o = json_pack("{s:s,s:s,s:o}", "login_server", r->login_server, "source",
					      x.found ? x.found->source : "static", "endpoints", eps);
			if (o && x.found) {
				json_object_set_new(o, "last_success", x.found->last_success ? json_string(when) : json_null());
				json_object_set_new(o, "last_error", json_string(x.found->last_error));
				if (x.found->saved) {
					char saved[64];
					strftime(saved, sizeof(saved), "%Y-%m-%dT%H:%M:%SZ", gmtime(&x.found->saved));
					json_object_set_new(o, "saved_set_loaded", json_string(saved));
				}
				json_object_set_new(o, "next_refresh", json_real(x.found->next_refresh));
			}
			json_array_append_new(arr, o);
			continue;
		}
		text_put(&t, "%s\n  source: %s\n", r->login_server, x.found ? x.found->source : "static");
		if (x.found && !x.found->last_success && x.found->saved) {
			/* After a restart "never" would read as "these endpoints are unknown". */
			char saved[64];
			strftime(saved, sizeof(saved), "%Y-%m-%dT%H:%M:%SZ", gmtime(&x.found->saved));
			snprintf(when, sizeof(when), "none since start; endpoints loaded from the set saved at %s",
				 saved);
		}
		if (x.found)
			text_put(&t, "  last success: %s\n  last error: %s\n  next refresh: in %.0f s\n", when,
			    x.found->last_error[0] ? x.found->last_error : "none", x.found->next_refresh);
		for (size_t j = 0; j < r->n_endpoints; j++)
			text_put(&t, "  endpoint: %s\n", r->endpoints[j]);
		if (r->n_endpoints == 0)
			text_put(&t, "  no dedicated data endpoints: pulls need *.blob.core.windows.net, which "
			    "stays denied\n");
	}
	if (json)
		return json_answer(arr);
	if (!t.buf)
		text_put(&t, "no registries configured\n");
	return t.buf;
}

struct route_list {
	json_t *arr;     /**< JSON: the array to fill */
	struct text *t;  /**< text: the line to extend */
	size_t n;
};

/** One server a name would go to. */
static void put_route(void *arg, const char *zone, const struct cfg_addr *addr,
		      const struct upstream_counters *n)
{
	struct route_list *r = arg;
	char a[64];
	(void)zone;
	(void)n;

	address_str((const struct sockaddr *)&addr->ss, a, sizeof(a));
	if (r->arr)
		json_array_append_new(r->arr, json_string(a));
	else
		text_put(r->t, "%s%s", r->n ? ", " : "", a);
	r->n++;
}

static char *explain(struct server *s, const char *name, bool json)
{
	uint8_t wire[WIRE_NAME_MAX + 1];
	char rule[400], shown[WIRE_NAME_STRLEN];
	struct policy_decision d;
	int len;

	if (!name || (len = wire_name_from_str(name, wire)) < 0)
		return error_answer(json, "explain needs a domain name");
	policy_decide(s->policy, wire, (size_t)len, &d);
	policy_describe(s->policy, &d, rule, sizeof(rule));
	wire_name_str(wire, shown);
	/* Denied and local names go nowhere: the policy decides first. */
	bool forwarded = d.verdict == VERDICT_ALLOW || d.verdict == VERDICT_PASS ||
			 d.verdict == VERDICT_AUDIT;
	if (json) {
		json_t *o = json_pack("{s:s,s:s,s:s}", "name", shown, "verdict",
				      policy_verdict_name(d.verdict), "rule", rule);
		struct route_list r = { json_array(), NULL, 0 };
		const char *zone = upstream_route(s->up, wire, (size_t)len, r.arr ? put_route : NULL, &r);
		if (o && r.arr && forwarded) {
			json_object_set_new(o, "zone", json_string(zone));
			json_object_set_new(o, "upstreams", r.arr);
		} else {
			json_decref(r.arr);
		}
		return json_answer(o);
	}
	struct text t = { 0 };
	text_put(&t, "%s %s\n  rule: %s\n", shown, policy_verdict_name(d.verdict), rule);
	if (forwarded) {
		struct route_list r = { NULL, &t, 0 };
		text_put(&t, "  upstreams: zone %s: ", upstream_route(s->up, wire, (size_t)len, NULL, NULL));
		upstream_route(s->up, wire, (size_t)len, put_route, &r);
		text_put(&t, "%s\n", r.n ? "" : "none usable: SERVFAIL or stale");
	}
	return t.buf;
}

static char *flush(struct server *s, const char *name, bool json)
{
	uint8_t wire[WIRE_NAME_MAX + 1];
	size_t n;
	int len = 0;

	if (name && (len = wire_name_from_str(name, wire)) < 0)
		return error_answer(json, "'%s' is not a domain name", name);
	n = cache_flush(s->cache, name ? wire : NULL, (size_t)len);
	/* A flush is also how an operator says "ask again now". */
	failcache_flush(s->fails, name ? wire : NULL, (size_t)len);
	log_notice("control: flushed %zu cache entries%s%s", n, name ? " for " : "", name ? name : "");
	if (json)
		return json_answer(json_pack("{s:i}", "flushed", (json_int_t)n));
	struct text t = { 0 };
	text_put(&t, "flushed %zu entries\n", n);
	return t.buf;
}

struct dump_ctx {
	struct text t;
	json_t *arr;
};

static void dump_one(void *arg, const uint8_t *name, uint16_t qtype, uint16_t qclass, uint8_t flags,
		     int64_t ttl, size_t bytes)
{
	struct dump_ctx *x = arg;
	char shown[WIRE_NAME_STRLEN], tbuf[16];
	const char *type = wire_type_str(qtype, tbuf);
	(void)qclass;

	wire_name_str(name, shown);
	if (x->arr) {
		json_array_append_new(x->arr, json_pack("{s:s,s:s,s:b,s:b,s:i,s:i}", "name", shown, "type",
			type, "do", (flags & CACHE_KEY_DO) != 0, "cd", (flags & CACHE_KEY_CD) != 0,
			"ttl", (json_int_t)ttl, "bytes", (json_int_t)bytes));
		return;
	}
	text_put(&x->t, "%s %s%s%s ttl=%" PRId64 "%s %zu bytes\n", shown, type,
	    (flags & CACHE_KEY_DO) ? " +do" : "", (flags & CACHE_KEY_CD) ? " +cd" : "",
	    ttl, ttl < 0 ? " (stale)" : "", bytes);
}

static char *dump_cache(struct server *s, bool json)
{
	struct dump_ctx x = { { 0 }, json ? json_array() : NULL };

	cache_walk(s->cache, server_now_ms(), dump_one, &x);
	if (json)
		return json_answer(x.arr);
	if (!x.t.buf)
		text_put(&x.t, "cache is empty\n");
	return x.t.buf;
}

static char *metrics(struct server *s, bool json)
{
	char *m = metrics_render(s);

	if (!m)
		return error_answer(json, "out of memory");
	if (!json)
		return m;
	/* Prometheus text is the format; JSON only wraps it. */
	json_t *o = json_pack("{s:s}", "metrics", m);
	free(m);
	return json_answer(o);
}

static char *nft_ruleset(struct server *s, bool json)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (!f)
		return error_answer(json, "out of memory");
	nft_print_ruleset(f, &s->cfg->nft);
	if (fclose(f) != 0 || !text) {
		free(text);
		return error_answer(json, "out of memory");
	}
	if (!json)
		return text;
	json_t *o = json_pack("{s:s,s:b}", "ruleset", text, "enabled", s->cfg->nft.enabled);
	free(text);
	return json_answer(o);
}

/** Is name a regional (geo-replica) endpoint rather than a data endpoint? */
static bool is_regional(const char *login, const char *name)
{
	const char *dot = strchr(login, '.');
	size_t reg = dot ? (size_t)(dot - login) : strlen(login);
	const char *region_end = strchr(name + reg + 1, '.');

	return region_end && strncasecmp(region_end, ".geo.", 5) == 0;
}

static char *firewall(struct server *s, bool json)
{
	struct text t = { 0 };
	json_t *arr = json ? json_array() : NULL;

	for (size_t i = 0; i < s->policy->n_registries; i++) {
		const struct policy_registry *r = &s->policy->registries[i];
		if (json) {
			json_t *data = json_array(), *geo = json_array(), *names = json_array();
			json_array_append_new(names, json_string(r->login_server));
			for (size_t j = 0; j < r->n_endpoints; j++) {
				json_array_append_new(is_regional(r->login_server, r->endpoints[j]) ? geo : data,
						      json_string(r->endpoints[j]));
				json_array_append_new(names, json_string(r->endpoints[j]));
			}
			json_array_append_new(arr, json_pack("{s:s,s:s,s:o,s:o,s:o}", "registry",
				r->login_server, "login_server", r->login_server, "data_endpoints", data,
				"regional_endpoints", geo, "names", names));
			continue;
		}
		text_put(&t, "# %s: login server, then %zu data and regional endpoints\n%s\n", r->login_server,
		    r->n_endpoints, r->login_server);
		for (size_t j = 0; j < r->n_endpoints; j++)
			text_put(&t, "%s\n", r->endpoints[j]);
	}
	if (json)
		return json_answer(arr);
	if (!t.buf)
		text_put(&t, "# no registries configured\n");
	return t.buf;
}

static void iso_time(time_t t, char *buf, size_t len)
{
	struct tm tm;

	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
}

/** The names audit mode saw, busiest first; "audit reset" forgets them. */
static char *audit(struct server *s, const char *arg, bool json)
{
	struct audit_report r;
	char since[32], first[32], last[32], shown[WIRE_NAME_STRLEN];

	if (arg && strcmp(arg, "reset") != 0)
		return error_answer(json, "'audit' takes nothing or 'reset', not '%.64s'", arg);
	if (!s->audit)
		return error_answer(json, "the audit table could not be allocated at start-up");
	if (arg) {
		audit_reset(s->audit);
		log_notice("control: audit table reset");
		if (json)
			return json_answer(json_pack("{s:b}", "reset", 1));
		struct text t = { 0 };
		text_put(&t, "audit table reset\n");
		return t.buf;
	}
	if (audit_report(s->audit, &r) < 0)
		return error_answer(json, "out of memory");
	iso_time(r.since, since, sizeof(since));
	json_t *arr = json ? json_array() : NULL;
	struct text t = { 0 };
	if (!json)
		text_put(&t, "# audit mode is %s; would-be-denied names since %s: %zu listed "
		    "(of %zu at most), %" PRIu64 " questions, %" PRIu64 " for names not listed\n"
		    "# count  name  first  last  rule\n", s->policy->audit ? "on" : "off", since, r.n,
		    r.max_names, r.questions, r.unlisted);
	for (size_t i = 0; i < r.n; i++) {
		const struct audit_entry *e = &r.entries[i];
		wire_name_str(e->name, shown);
		shown[strlen(shown) - 1] = '\0';  /* as allow rules are written */
		iso_time(e->first, first, sizeof(first));
		iso_time(e->last, last, sizeof(last));
		if (json)
			json_array_append_new(arr, json_pack("{s:s,s:I,s:s,s:s,s:s}", "name", shown,
				"count", (json_int_t)e->count, "rule", e->rule, "first", first,
				"last", last));
		else
			text_put(&t, "%" PRIu64 " %s %s %s %s\n", e->count, shown, first, last, e->rule);
	}
	audit_report_free(&r);
	if (json)
		return json_answer(json_pack("{s:b,s:s,s:I,s:I,s:I,s:o}", "audit", s->policy->audit,
			"since", since, "max_names", (json_int_t)r.max_names,
			"questions", (json_int_t)r.questions, "unlisted", (json_int_t)r.unlisted,
			"names", arr));
	return t.buf;
}

static char *reload_answer(int rc, const char *err, bool json)
{
	if (rc < 0)
		return error_answer(json, "reload failed, the running configuration stays: %s", err);
	if (json)
		return json_answer(json_pack("{s:b}", "reloaded", 1));
	struct text t = { 0 };
	text_put(&t, "reloaded\n");
	return t.buf;
}

/** An answer now, or NULL with *reload set: the caller asks for a reload and answers later. */
static char *answer(struct server *s, const char *request, bool *reload, bool *json_out)
{
	char line[CTL_LINE_MAX + 1], *words[4], *save = NULL;
	int n = 0;
	bool json = false;

	snprintf(line, sizeof(line), "%s", request);
	for (char *w = strtok_r(line, " \t\r\n", &save); w; w = strtok_r(NULL, " \t\r\n", &save)) {
		if (strcmp(w, "--json") == 0)
			json = true;
		else if (n < 4)
			words[n++] = w;
		else
			return error_answer(json, "too many words");
	}
	*json_out = json;
	if (n == 0)
		return error_answer(json, "empty request; try: status, stats, endpoints, explain NAME, "
				    "flush [NAME], dump-cache, reload, metrics, nft, firewall, audit [reset], ready");
	const char *cmd = words[0], *arg = n > 1 ? words[1] : NULL;
	bool one_arg = strcmp(cmd, "explain") == 0 || strcmp(cmd, "flush") == 0 ||
		       strcmp(cmd, "audit") == 0;
	if (n > (one_arg ? 2 : 1))
		return error_answer(json, "'%s' takes %s", cmd, one_arg ? "one argument" : "no argument");
	if (strcmp(cmd, "status") == 0)
		return status(s, json);
	if (strcmp(cmd, "stats") == 0)
		return stats(s, json);
	if (strcmp(cmd, "ready") == 0)
		return readiness(s, json);
	if (strcmp(cmd, "endpoints") == 0)
		return endpoints(s, json);
	if (strcmp(cmd, "explain") == 0)
		return explain(s, arg, json);
	if (strcmp(cmd, "flush") == 0)
		return flush(s, arg, json);
	if (strcmp(cmd, "dump-cache") == 0)
		return dump_cache(s, json);
	if (strcmp(cmd, "reload") == 0) {
		if (!s->reloads)
			return error_answer(json, "this process does not reload");
		*reload = true;
		return NULL;
	}
	if (strcmp(cmd, "metrics") == 0)
		return metrics(s, json);
	if (strcmp(cmd, "nft") == 0)
		return nft_ruleset(s, json);
	if (strcmp(cmd, "firewall") == 0)
		return firewall(s, json);
	if (strcmp(cmd, "audit") == 0)
		return audit(s, arg, json);
	return error_answer(json, "unknown command '%.64s'; try: status, stats, endpoints, explain NAME, "
			    "flush [NAME], dump-cache, reload, metrics, nft, firewall, audit [reset], ready", cmd);
}

char *control_answer(struct server *s, const char *request)
{
	bool reload = false, json = false;
	char *out = answer(s, request, &reload, &json);

	return reload ? error_answer(json, "reload is answered on the control socket only") : out;
}

/* ---- the socket ---- */

static void conn_free(struct ctl_conn *k)
{
	struct control *c = k->ctl;

	for (struct ctl_conn **pp = &c->conns; *pp; pp = &(*pp)->next)
		if (*pp == k) {
			*pp = k->next;
			break;
		}
	if (k->reloading)
		reload_forget(c->srv->reloads, &k->reload);
	ev_io_stop(c->srv->loop, &k->io);
	ev_timer_stop(c->srv->loop, &k->timer);
	close(k->fd);
	free(k->out);
	free(k);
}

static void conn_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct ctl_conn *k = w->data;
	(void)loop;
	(void)revents;

	while (k->out_off < k->out_len) {
		ssize_t n = send(k->fd, k->out + k->out_off, k->out_len - k->out_off, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			break;
		}
		k->out_off += (size_t)n;
	}
	conn_free(k);
}

/** Write k->out, the whole answer; close when it is written (or cannot be). */
static void conn_send(struct ctl_conn *k)
{
	struct ev_loop *loop = k->ctl->srv->loop;

	if (!k->out) {
		conn_free(k);
		return;
	}
	k->out_len = strlen(k->out);
	ev_io_stop(loop, &k->io);
	ev_io_init(&k->io, conn_write_cb, k->fd, EV_WRITE);
	k->io.data = k;
	ev_io_start(loop, &k->io);
	/* The answer must be taken within the same time. */
	ev_timer_again(loop, &k->timer);
}

static void conn_reloaded(struct reload_waiter *w, int rc, const char *err);

static void conn_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct ctl_conn *k = w->data;
	(void)revents;

	ssize_t n = recv(k->fd, k->in + k->in_len, CTL_LINE_MAX - k->in_len, 0);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0 && k->in_len == 0) {
		conn_free(k);
		return;
	}
	if (n > 0)
		k->in_len += (size_t)n;
	k->in[k->in_len] = '\0';
	char *nl = memchr(k->in, '\n', k->in_len);
	if (!nl && n > 0 && k->in_len < CTL_LINE_MAX)
		return; /* the rest of the line is coming */
	if (nl)
		*nl = '\0';
	bool reload = false;
	if (!nl && k->in_len == CTL_LINE_MAX)
		k->out = error_answer(false, "request longer than %d bytes", CTL_LINE_MAX);
	else
		k->out = answer(k->ctl->srv, k->in, &reload, &k->json);
	if (reload) {
		/* Nothing to read meanwhile, and no deadline: see the top of the file. */
		ev_io_stop(loop, &k->io);
		ev_timer_stop(loop, &k->timer);
		k->reloading = true;
		reload_request(k->ctl->srv->reloads, k->ctl->srv->cfg->path, &k->reload);
		return;
	}
	conn_send(k);
}

static void conn_reloaded(struct reload_waiter *w, int rc, const char *err)
{
	struct ctl_conn *k = (struct ctl_conn *)(void *)((char *)w - offsetof(struct ctl_conn, reload));

	k->reloading = false;
	k->out = reload_answer(rc, err, k->json);
	conn_send(k);
}

static void conn_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	conn_free(w->data);
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct control *c = w->data;
	(void)revents;

	for (int i = 0; i < 8; i++) {
		int fd = accept4(c->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		struct ctl_conn *k = calloc(1, sizeof(*k));
		if (!k) {
			close(fd);
			continue;
		}
		k->ctl = c;
		k->fd = fd;
		k->reload.done = conn_reloaded;
		ev_io_init(&k->io, conn_read_cb, fd, EV_READ);
		ev_timer_init(&k->timer, conn_timeout_cb, CTL_TIMEOUT, CTL_TIMEOUT);
		k->io.data = k->timer.data = k;
		ev_io_start(loop, &k->io);
		ev_timer_start(loop, &k->timer);
		k->next = c->conns;
		c->conns = k;
	}
}

struct control *control_new(struct server *s)
{
	struct control *c = calloc(1, sizeof(*c));

	if (c) {
		c->srv = s;
		c->fd = -1;
	}
	return c;
}

static void close_socket(struct control *c)
{
	if (c->fd < 0)
		return;
	ev_io_stop(c->srv->loop, &c->io);
	close(c->fd);
	unlink(c->path);
	c->fd = -1;
	free(c->path);
	c->path = NULL;
}

void control_configure(struct control *c, const struct config *cfg)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char dir[sizeof(sa.sun_path)];
	int fd;

	if (!c || (c->path && strcmp(c->path, cfg->control_socket) == 0))
		return;
	close_socket(c);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", cfg->control_socket);
	snprintf(dir, sizeof(dir), "%s", cfg->control_socket);
	char hint[512];
	if (mkdir(dirname(dir), 0755) < 0 && errno != EEXIST) {
		log_err("control socket %s: cannot create its directory: %s%s", cfg->control_socket,
			strerror(errno), log_path_hint(errno, dir, hint, sizeof(hint)));
		return;
	}
	/* A socket left by a daemon that did not stop cleanly is removed; one
	 * that answers belongs to a running daemon and is left to it. */
	struct stat st;
	if (lstat(sa.sun_path, &st) == 0 && S_ISSOCK(st.st_mode)) {
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		bool alive = probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0;
		if (probe >= 0)
			close(probe);
		if (alive) {
			log_err("control socket %s is in use by another acrdnsd; this one has none",
				sa.sun_path);
			return;
		}
		unlink(sa.sun_path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    chmod(sa.sun_path, 0660) < 0 || listen(fd, 16) < 0) {
		int e = errno;
		log_err("control socket %s: %s; acrdnsctl will not reach this daemon%s",
			cfg->control_socket, strerror(e), log_path_hint(e, dir, hint, sizeof(hint)));
		if (fd >= 0)
			close(fd);
		return;
	}
	if (!(c->path = strdup(sa.sun_path))) {
		close(fd);
		unlink(sa.sun_path);
		return;
	}
	c->fd = fd;
	ev_io_init(&c->io, accept_cb, fd, EV_READ);
	c->io.data = c;
	ev_io_start(c->srv->loop, &c->io);
	log_info("control socket %s", c->path);
}

const char *control_path(const struct control *c)
{
	return c && c->fd >= 0 ? c->path : NULL;
}

void control_free(struct control *c)
{
	if (!c)
		return;
	while (c->conns)
		conn_free(c->conns);
	close_socket(c);
	free(c);
}
