/**
 * \file config.c
 * libconfig file → struct config.  Every key is checked against the list
 * of known keys and every value against its type and range: an operator's
 * typo must be an error, not a silently ignored line.
 */
#include "autoconf.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <libconfig.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "regname.h"
#include "wire.h"

const char *const config_keys[] = {
	"listen", "access", "upstreams", "mode", "deny_response", "deny_ttl",
	"rules", "allow", "deny", "local", "registries", "cache", "state_dir",
	"control_socket", "log", "rate_limit", "tcp", "user", "group", "metrics_listen",
	"nftables", "workers", "audit", "forward",
	/* groups' members, as "group.key" */
	"rate_limit.qps", "rate_limit.burst", "rate_limit.action", "rate_limit.exempt",
	"tcp.max_connections", "tcp.max_per_client", "tcp.idle_timeout",
	"cache.size", "cache.min_ttl", "cache.max_ttl", "cache.negative_ttl",
	"cache.stale_ttl", "cache.stale_recheck", "log.level", "log.queries", "log.format",
	"nftables.table", "nftables.set4", "nftables.set6", "nftables.grace",
	"local.name", "local.addresses", "local.ttl", "forward.zone", "forward.upstreams",
	"registries.login_server", "registries.data_endpoints", "registries.discovery",
	"discovery.source", "discovery.path", "discovery.command", "discovery.interval",
	"discovery.timeout", "discovery.resource_id", "discovery.arm_endpoint",
	"discovery.imds_endpoint", "discovery.client_id", "discovery.api_version",
	NULL,
};

/*
 * libconfig says only "syntax error" and a line.  The two mistakes people
 * make editing lists are a comma left after the last element (libconfig
 * takes none) and one missing between elements; find them by reading the
 * file's tokens again up to that line.  Adjacent strings are one value to
 * libconfig ("a" "b" is "ab"), and so here.
 */
struct syn_tok {
	char kind;   /* one of ,;=:[](){} ; 's' a string; 'v' another value */
	int line;
};

static bool syn_value_end(char k)
{
	return k == 's' || k == 'v' || k == ']' || k == ')' || k == '}';
}

static bool syn_value_start(char k)
{
	return k == 's' || k == 'v' || k == '[' || k == '(' || k == '{';
}

static void syntax_hint(const char *file, int err_line, char *buf, size_t len)
{
	FILE *f = fopen(file, "r");
	struct syn_tok prev = { 0, 0 };
	char stack[64];
	size_t depth = 0;
	int c, line = 1;
	bool in_comment = false, in_string = false, esc = false;

	buf[0] = '\0';
	if (!f)
		return;
	while ((c = getc(f)) != EOF && line <= err_line) {
		struct syn_tok t = { 0, line };
		if (c == '\n')
			line++;
		if (in_comment) {
			if (c == '*') {
				int d = getc(f);
				if (d == '/')
					in_comment = false;
				else if (d != EOF)
					ungetc(d, f);
			}
			continue;
		}
		if (in_string) {
			if (esc)
				esc = false;
			else if (c == '\\')
				esc = true;
			else if (c == '"')
				in_string = false;
			continue;
		}
		int next = c == '/' ? getc(f) : EOF;
		if (c == '/' && next == '*') {
			in_comment = true;
			continue;
		}
		if (next != EOF)
			ungetc(next, f);
		if (c == '#' || (c == '/' && next == '/')) {
			while ((c = getc(f)) != EOF && c != '\n')
				;
			line++;
			continue;
		}
		if (isspace(c))
			continue;
		if (c == '"') {
			in_string = true;
			if (prev.kind == 's')
				continue; /* concatenated */
			t.kind = 's';
		} else if (strchr(",;=:[](){}", c)) {
			t.kind = (char)c;
		} else {
			while ((c = getc(f)) != EOF && !isspace(c) && !strchr(",;=:[](){}\"#", c))
				;
			if (c != EOF)
				ungetc(c, f);
			t.kind = 'v';
		}
		if (t.line == err_line && prev.kind) {
			/* Deeper than the stack: too deep to be a slip of a comma. */
			char open = depth && depth <= sizeof(stack) ? stack[depth - 1] : 0;
			if (prev.kind == ',' && (t.kind == ']' || t.kind == ')')) {
				snprintf(buf, len, ": a ',' after the last element of the list (line %d): "
					 "remove it, libconfig takes none there", prev.line);
				break;
			}
			if ((open == '[' || open == '(') && syn_value_end(prev.kind) &&
			    syn_value_start(t.kind)) {
				snprintf(buf, len, ": expected ',' between two elements of a list (after "
					 "the one on line %d)", prev.line);
				break;
			}
		}
		if (t.kind == '[' || t.kind == '(' || t.kind == '{') {
			if (depth < sizeof(stack))
				stack[depth] = t.kind;
			depth++;
		} else if ((t.kind == ']' || t.kind == ')' || t.kind == '}') && depth) {
			depth--;
		}
		prev = t;
	}
	fclose(f);
}

struct loader {
	const char *path;
	char *err;
	size_t errlen;
};

__attribute__((format(printf, 3, 4)))
static int fail(struct loader *ld, const config_setting_t *s, const char *fmt, ...)
{
	int n;
	va_list ap;

	int line = s ? config_setting_source_line(s) : 0;

	n = line ? snprintf(ld->err, ld->errlen, "%s:%d: ", ld->path, line)
		 : snprintf(ld->err, ld->errlen, "%s: ", ld->path);
	if (n < 0 || (size_t)n >= ld->errlen)
		return -1;
	va_start(ap, fmt);
	vsnprintf(ld->err + n, ld->errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return -1;
}

static void *xcalloc(size_t n, size_t size)
{
	return calloc(n ? n : 1, size);
}

static char *xstrdup(const char *s)
{
	return s ? strdup(s) : NULL;
}

/** Reject members of a group that are not in allowed (NULL-terminated). */
static int check_keys(struct loader *ld, const config_setting_t *group,
		      const char *what, const char *const *allowed)
{
	int n = config_setting_length(group);

	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(group, (unsigned)i);
		const char *name = config_setting_name(s);
		bool known = false;
		for (const char *const *k = allowed; *k; k++)
			if (strcmp(*k, name) == 0)
				known = true;
		if (!known)
			return fail(ld, s, "unknown key '%s' in %s", name, what);
	}
	return 0;
}

static int get_string(struct loader *ld, const config_setting_t *s, const char **out)
{
	*out = "";
	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return fail(ld, s, "'%s' must be a string", config_setting_name(s));
	*out = config_setting_get_string(s);
	return 0;
}

static int get_uint(struct loader *ld, const config_setting_t *s, long long max,
		    uint32_t *out)
{
	long long v;

	if (config_setting_type(s) == CONFIG_TYPE_INT)
		v = config_setting_get_int(s);
	else if (config_setting_type(s) == CONFIG_TYPE_INT64)
		v = config_setting_get_int64(s);
	else
		return fail(ld, s, "'%s' must be an integer", config_setting_name(s));
	if (v < 0 || v > max)
		return fail(ld, s, "'%s' must be between 0 and %lld", config_setting_name(s), max);
	*out = (uint32_t)v;
	return 0;
}

/** A list or array of strings, each kept with its line. */
static int get_str_list(struct loader *ld, const config_setting_t *s,
			struct cfg_str **out, size_t *count)
{
	int n;

	if (!config_setting_is_aggregate(s) || config_setting_is_group(s))
		return fail(ld, s, "'%s' must be a list of strings", config_setting_name(s));
	n = config_setting_length(s);
	*out = xcalloc((size_t)n, sizeof(**out));
	if (!*out)
		return fail(ld, s, "out of memory");
	*count = (size_t)n;
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		if (config_setting_type(e) != CONFIG_TYPE_STRING)
			return fail(ld, e, "'%s' must be a list of strings", config_setting_name(s));
		(*out)[i].s = xstrdup(config_setting_get_string(e));
		(*out)[i].line = config_setting_source_line(e);
		if (!(*out)[i].s)
			return fail(ld, e, "out of memory");
	}
	return 0;
}

static int load_addrs(struct loader *ld, const config_setting_t *s, struct cfg_addr **out,
		      size_t *count)
{
	struct cfg_str *list = NULL;
	size_t n = 0;
	int rc = get_str_list(ld, s, &list, &n);

	if (rc == 0 && n == 0)
		rc = fail(ld, s, "'%s' needs at least one address", config_setting_name(s));
	if (rc == 0 && !(*out = xcalloc(n, sizeof(**out))))
		rc = fail(ld, s, "out of memory");
	for (size_t i = 0; rc == 0 && i < n; i++) {
		if (address_parse(list[i].s, 53, &(*out)[i]) < 0) {
			rc = fail(ld, config_setting_get_elem(s, (unsigned)i),
				  "'%s' is not an address[:port]", list[i].s);
			break;
		}
		/* Twice the same socket would fail to bind, and only at start. */
		for (size_t j = 0; j < i; j++)
			if (address_equal(&(*out)[j], &(*out)[i]))
				rc = fail(ld, config_setting_get_elem(s, (unsigned)i),
					  "'%s' is listed twice", list[i].s);
	}
	*count = *out ? n : 0;
	for (size_t i = 0; i < n; i++)
		free(list[i].s);
	free(list);
	return rc;
}

/** A list of networks ("10.0.0.0/8"), for access and rate-limit exemptions. */
static int load_nets(struct loader *ld, const config_setting_t *s, struct cfg_net **out, size_t *count)
{
	struct cfg_str *list = NULL;
	size_t n = 0;
	int rc = get_str_list(ld, s, &list, &n);

	if (rc == 0 && !(*out = xcalloc(n, sizeof(**out))))
		rc = fail(ld, s, "out of memory");
	for (size_t i = 0; rc == 0 && i < n; i++)
		if (address_parse_net(list[i].s, &(*out)[i]) < 0)
			rc = fail(ld, config_setting_get_elem(s, (unsigned)i),
				  "'%s' is not a network (address/prefix)", list[i].s);
	*count = *out ? n : 0;
	for (size_t i = 0; i < n; i++)
		free(list[i].s);
	free(list);
	return rc;
}

/** A list of upstreams: address[:port] or file:PATH each. */
static int load_upstream_list(struct loader *ld, const config_setting_t *s, const char *what,
			      struct cfg_upstream **out, size_t *count)
{
	struct cfg_str *list = NULL;
	size_t n = 0;
	int rc = get_str_list(ld, s, &list, &n);

	if (rc == 0 && n == 0)
		rc = fail(ld, s, "'%s' needs at least one server", what);
	if (rc == 0 && !(*out = xcalloc(n, sizeof(**out))))
		rc = fail(ld, s, "out of memory");
	for (size_t i = 0; rc == 0 && i < n; i++) {
		struct cfg_upstream *u = &(*out)[i];
		u->line = list[i].line;
		if (strncmp(list[i].s, "file:", 5) == 0) {
			if (list[i].s[5] == '\0')
				rc = fail(ld, config_setting_get_elem(s, (unsigned)i),
					  "'file:' needs a path");
			else
				u->file = xstrdup(list[i].s + 5);
		} else if (address_parse(list[i].s, 53, &u->addr) < 0) {
			rc = fail(ld, config_setting_get_elem(s, (unsigned)i),
				  "upstream '%s' is not an address[:port] or file:PATH", list[i].s);
		}
	}
	/* Found by fuzz_config: with no array, a count would make
	 * config_free() walk a NULL pointer. */
	*count = *out ? n : 0;
	for (size_t i = 0; i < n; i++)
		free(list[i].s);
	free(list);
	return rc;
}

static int load_upstreams(struct loader *ld, struct config *cfg, const config_setting_t *s)
{
	return load_upstream_list(ld, s, "upstreams", &cfg->upstreams, &cfg->n_upstreams);
}

/** forward = ( { zone = "..."; upstreams = [ ... ]; }, ... ) */
static int load_forward(struct loader *ld, struct config *cfg, const config_setting_t *list)
{
	static const char *const keys[] = { "zone", "upstreams", NULL };
	static const char shape[] = "( { zone = \"privatelink.azurecr.io\"; upstreams = [ \"10.1.0.4\" ]; }, ... )";
	int n;

	if (!config_setting_is_list(list) && !config_setting_is_array(list))
		return fail(ld, list, "'forward' must be a list %s", shape);
	n = config_setting_length(list);
	if (!(cfg->forward = xcalloc((size_t)n, sizeof(*cfg->forward))))
		return fail(ld, list, "out of memory");
	for (int i = 0; i < n; i++) {
		const config_setting_t *g = config_setting_get_elem(list, (unsigned)i);
		struct cfg_forward *f = &cfg->forward[i];
		const config_setting_t *s;
		const char *zone;
		char shown[WIRE_NAME_STRLEN];
		cfg->n_forward = (size_t)i + 1;

		if (!config_setting_is_group(g))
			return fail(ld, g, "each 'forward' entry must be a group { zone = ...; upstreams = [...]; }");
		if (check_keys(ld, g, "forward", keys) < 0)
			return -1;
		f->line = config_setting_source_line(g);
		if (!(s = config_setting_get_member(g, "zone")))
			return fail(ld, g, "'forward' entry needs a 'zone', e.g. \"privatelink.azurecr.io\"");
		if (get_string(ld, s, &zone) < 0)
			return -1;
		if ((f->zone_len = wire_name_from_str(zone, f->zone)) < 0 || strchr(zone, '*'))
			return fail(ld, s, "zone '%s' is not a domain name (a zone holds itself and every "
				    "name below it: no wildcard)", zone);
		if (f->zone_len == 1)
			return fail(ld, s, "zone '.' is what 'upstreams' serves; name a zone below it");
		for (int j = 0; j < i; j++)
			if (cfg->forward[j].zone_len == f->zone_len &&
			    memcmp(cfg->forward[j].zone, f->zone, (size_t)f->zone_len) == 0)
				return fail(ld, s, "zone '%s' is already forwarded (line %d)", zone,
					    cfg->forward[j].line);
		wire_name_str(f->zone, shown);
		shown[strlen(shown) - 1] = '\0';   /* no trailing dot: as users write zones */
		if (!(f->name = xstrdup(shown)))
			return fail(ld, s, "out of memory");
		if (!(s = config_setting_get_member(g, "upstreams")))
			return fail(ld, g, "'forward' entry for zone '%s' needs 'upstreams'", zone);
		if (load_upstream_list(ld, s, "upstreams", &f->upstreams, &f->n_upstreams) < 0)
			return -1;
	}
	return 0;
}

const struct cfg_forward *config_forward_find(const struct config *cfg, const uint8_t *name, size_t len)
{
	const struct cfg_forward *best = NULL;

	/* Zones that hold a name are suffixes of it: the longest is the most specific. */
	for (size_t i = 0; i < cfg->n_forward; i++) {
		const struct cfg_forward *f = &cfg->forward[i];
		if ((!best || f->zone_len > best->zone_len) &&
		    wire_name_under(name, len, f->zone, (size_t)f->zone_len))
			best = f;
	}
	return best;
}

static int load_enum(struct loader *ld, const config_setting_t *s, const char *const *names,
		     int *out)
{
	const char *v;

	if (get_string(ld, s, &v) < 0)
		return -1;
	for (int i = 0; names[i]; i++) {
		if (strcmp(names[i], v) == 0) {
			*out = i;
			return 0;
		}
	}
	char choices[256] = "";
	for (int i = 0; names[i]; i++) {
		strncat(choices, i ? " | " : "", sizeof(choices) - strlen(choices) - 1);
		strncat(choices, names[i], sizeof(choices) - strlen(choices) - 1);
	}
	return fail(ld, s, "'%s' is '%s'; expected %s", config_setting_name(s), v, choices);
}

static int load_size(struct loader *ld, const config_setting_t *s, uint64_t *out)
{
	if (config_setting_type(s) == CONFIG_TYPE_INT || config_setting_type(s) == CONFIG_TYPE_INT64) {
		long long v = config_setting_get_int64(s);
		if (config_setting_type(s) == CONFIG_TYPE_INT)
			v = config_setting_get_int(s);
		if (v < 0)
			return fail(ld, s, "'size' must not be negative");
		*out = (uint64_t)v;
	} else if (config_setting_type(s) == CONFIG_TYPE_STRING) {
		const char *v = config_setting_get_string(s);
		char *end;
		errno = 0;
		unsigned long long n = strtoull(v, &end, 10);
		uint64_t mult = 1;
		if (*end == 'k' || *end == 'K')
			mult = 1024;
		else if (*end == 'm' || *end == 'M')
			mult = 1024 * 1024;
		else if (*end == 'g' || *end == 'G')
			mult = 1024ULL * 1024 * 1024;
		if (mult != 1)
			end++;
		if (v[0] < '0' || v[0] > '9' || *end != '\0' || errno || n > (1ULL << 40) / mult)
			return fail(ld, s, "'size' is '%s'; expected a byte count such as \"64M\"", v);
		*out = n * mult;
	} else {
		return fail(ld, s, "'size' must be a byte count such as \"64M\"");
	}
	if (*out < 64 * 1024)
		return fail(ld, s, "'size' must be at least 64K");
	return 0;
}

static int load_cache(struct loader *ld, struct config *cfg, const config_setting_t *g)
{
	static const char *const keys[] = { "size", "min_ttl", "max_ttl", "negative_ttl",
					    "stale_ttl", "stale_recheck", NULL };
	const config_setting_t *s;

	if (!config_setting_is_group(g))
		return fail(ld, g, "'cache' must be a group { ... }");
	if (check_keys(ld, g, "cache", keys) < 0)
		return -1;
	if ((s = config_setting_get_member(g, "size")) && load_size(ld, s, &cfg->cache_size) < 0)
		return -1;
	if ((s = config_setting_get_member(g, "min_ttl")) && get_uint(ld, s, INT32_MAX, &cfg->min_ttl) < 0)
		return -1;
	if ((s = config_setting_get_member(g, "max_ttl")) && get_uint(ld, s, INT32_MAX, &cfg->max_ttl) < 0)
		return -1;
	if ((s = config_setting_get_member(g, "negative_ttl")) &&
	    get_uint(ld, s, INT32_MAX, &cfg->negative_ttl) < 0)
		return -1;
	if ((s = config_setting_get_member(g, "stale_ttl")) &&
	    get_uint(ld, s, INT32_MAX, &cfg->stale_ttl) < 0)
		return -1;
	if ((s = config_setting_get_member(g, "stale_recheck")) &&
	    get_uint(ld, s, 3600, &cfg->stale_recheck) < 0)
		return -1;
	if (cfg->min_ttl > cfg->max_ttl)
		return fail(ld, g, "'min_ttl' (%u) is above 'max_ttl' (%u)", cfg->min_ttl, cfg->max_ttl);
	return 0;
}

static int load_rate_limit(struct loader *ld, struct config *cfg, const config_setting_t *g)
{
	static const char *const keys[] = { "qps", "burst", "action", "exempt", NULL };
	static const char *const actions[] = { "refuse", "drop", NULL };
	const config_setting_t *s;
	int a;

	if (!config_setting_is_group(g))
		return fail(ld, g, "'rate_limit' must be a group { qps = ...; burst = ...; }");
	if (check_keys(ld, g, "rate_limit", keys) < 0)
		return -1;
	if (!(s = config_setting_get_member(g, "qps")))
		return fail(ld, g, "'rate_limit' needs 'qps'");
	if (get_uint(ld, s, 10000000, &cfg->rate_limit.qps) < 0)
		return -1;
	if (cfg->rate_limit.qps == 0)
		return fail(ld, s, "'qps' must be at least 1 (leave 'rate_limit' out for no limit)");
	cfg->rate_limit.burst = cfg->rate_limit.qps * 2;
	if ((s = config_setting_get_member(g, "burst")) &&
	    get_uint(ld, s, 100000000, &cfg->rate_limit.burst) < 0)
		return -1;
	if (cfg->rate_limit.burst == 0)
		return fail(ld, s, "'burst' must be at least 1");
	if ((s = config_setting_get_member(g, "action"))) {
		if (load_enum(ld, s, actions, &a) < 0)
			return -1;
		cfg->rate_limit.drop = a == 1;
	}
	if ((s = config_setting_get_member(g, "exempt")) &&
	    load_nets(ld, s, &cfg->rate_limit.exempt, &cfg->rate_limit.n_exempt) < 0)
		return -1;
	return 0;
}

static int load_tcp(struct loader *ld, struct config *cfg, const config_setting_t *g)
{
	static const char *const keys[] = { "max_connections", "max_per_client", "idle_timeout", NULL };
	const config_setting_t *s;

	if (!config_setting_is_group(g))
		return fail(ld, g, "'tcp' must be a group { max_connections = ...; }");
	if (check_keys(ld, g, "tcp", keys) < 0)
		return -1;
	if ((s = config_setting_get_member(g, "max_connections")) &&
	    get_uint(ld, s, 65536, &cfg->tcp_max_connections) < 0)
		return -1;
	if ((s = config_setting_get_member(g, "max_per_client")) &&
	    get_uint(ld, s, 65536, &cfg->tcp_max_per_client) < 0)
		return -1;
	if ((s = config_setting_get_member(g, "idle_timeout")) &&
	    get_uint(ld, s, 3600, &cfg->tcp_idle_timeout) < 0)
		return -1;
	if (cfg->tcp_max_connections == 0 || cfg->tcp_max_per_client == 0 || cfg->tcp_idle_timeout == 0)
		return fail(ld, g, "'tcp' limits must be at least 1");
	return 0;
}

static int load_log(struct loader *ld, struct config *cfg, const config_setting_t *g)
{
	static const char *const keys[] = { "level", "queries", "format", NULL };
	static const char *const qlog[] = { "none", "denied", "all", NULL };
	static const char *const formats[] = { "text", "json", NULL };
	const config_setting_t *s;
	const char *v;
	int q;

	if (!config_setting_is_group(g))
		return fail(ld, g, "'log' must be a group { ... }");
	if (check_keys(ld, g, "log", keys) < 0)
		return -1;
	if ((s = config_setting_get_member(g, "level"))) {
		if (get_string(ld, s, &v) < 0)
			return -1;
		if (log_level_parse(v, &cfg->log_level) < 0)
			return fail(ld, s, "'level' is '%s'; expected err | warning | notice | info | debug", v);
	}
	if ((s = config_setting_get_member(g, "queries"))) {
		if (load_enum(ld, s, qlog, &q) < 0)
			return -1;
		cfg->log_queries = (enum cfg_query_log)q;
	}
	if ((s = config_setting_get_member(g, "format"))) {
		if (load_enum(ld, s, formats, &q) < 0)
			return -1;
		cfg->log_format = (enum log_format)q;
	}
	return 0;
}

/** A set name as nft takes it: letters, digits, '_', '-', '.'; at most 63 bytes. */
static bool nft_name_ok(const char *v)
{
	size_t n = strlen(v);

	if (n == 0 || n > 63 || !isalpha((unsigned char)v[0]))
		return false;
	for (const char *p = v; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-' && *p != '.')
			return false;
	return true;
}

static int load_nftables(struct loader *ld, struct config *cfg, const config_setting_t *g)
{
	static const char *const keys[] = { "table", "set4", "set6", "grace", NULL };
	static const char *const families[] = { "ip", "ip6", "inet", NULL };
	const config_setting_t *s;
	const char *v;

	if (!config_setting_is_group(g))
		return fail(ld, g, "'nftables' must be a group { table = \"inet acrdns\"; ... }");
	if (check_keys(ld, g, "nftables", keys) < 0)
		return -1;
	cfg->nft.enabled = true;
	if ((s = config_setting_get_member(g, "table"))) {
		char family[8], name[64];
		if (get_string(ld, s, &v) < 0)
			return -1;
		char extra[2];
		if (sscanf(v, "%7s %63s %1s", family, name, extra) != 2 || strchr(v, '\n'))
			return fail(ld, s, "'table' is '%s'; expected FAMILY NAME, as in \"inet acrdns\"", v);
		bool known = false;
		for (const char *const *f = families; *f; f++)
			known |= strcmp(*f, family) == 0;
		if (!known || !nft_name_ok(name))
			return fail(ld, s, "'table' is '%s'; the family must be ip, ip6 or inet and the "
				    "name letters, digits, '_', '-' or '.'", v);
		memcpy(cfg->nft.family, family, sizeof(family));
		memcpy(cfg->nft.table, name, sizeof(name));
	}
	const struct { const char *key; char *out; } sets[] = {
		{ "set4", cfg->nft.set4 }, { "set6", cfg->nft.set6 },
	};
	for (size_t i = 0; i < 2; i++) {
		if (!(s = config_setting_get_member(g, sets[i].key)))
			continue;
		if (get_string(ld, s, &v) < 0)
			return -1;
		if (!nft_name_ok(v))
			return fail(ld, s, "'%s' is '%s'; a set name is letters, digits, '_', '-' or '.' "
				    "(at most 63)", sets[i].key, v);
		snprintf(sets[i].out, 64, "%s", v);
	}
	if (strcmp(cfg->nft.family, "ip") == 0)
		cfg->nft.set6[0] = '\0';   /* an ip table holds no IPv6 set */
	if (strcmp(cfg->nft.family, "ip6") == 0)
		cfg->nft.set4[0] = '\0';
	if ((s = config_setting_get_member(g, "grace")) && get_uint(ld, s, 7 * 86400, &cfg->nft.grace) < 0)
		return -1;
	return 0;
}

static int load_local(struct loader *ld, struct config *cfg, const config_setting_t *list)
{
	static const char *const keys[] = { "name", "addresses", "ttl", NULL };
	int n;

	if (!config_setting_is_list(list) && !config_setting_is_array(list))
		return fail(ld, list, "'local' must be a list ( { name = ...; addresses = [...]; }, ... )");
	n = config_setting_length(list);
	if (!(cfg->local = xcalloc((size_t)n, sizeof(*cfg->local))))
		return fail(ld, list, "out of memory");
	for (int i = 0; i < n; i++) {
		const config_setting_t *g = config_setting_get_elem(list, (unsigned)i);
		struct cfg_local *l = &cfg->local[i];
		const config_setting_t *s;
		const char *name;
		cfg->n_local = (size_t)i + 1;

		if (!config_setting_is_group(g))
			return fail(ld, g, "each 'local' entry must be a group { name = ...; addresses = [...]; }");
		if (check_keys(ld, g, "local", keys) < 0)
			return -1;
		l->line = config_setting_source_line(g);
		l->ttl = 300;
		if (!(s = config_setting_get_member(g, "name")))
			return fail(ld, g, "'local' entry needs a 'name'");
		if (get_string(ld, s, &name) < 0)
			return -1;
		if ((l->name_len = wire_name_from_str(name, l->name)) < 0 || strchr(name, '*'))
			return fail(ld, s, "'%s' is not a domain name", name);
		for (int j = 0; j < i; j++)
			if (cfg->local[j].name_len == l->name_len &&
			    memcmp(cfg->local[j].name, l->name, (size_t)l->name_len) == 0)
				return fail(ld, s, "'%s' is already a local name (line %d)", name,
					    cfg->local[j].line);
		if ((s = config_setting_get_member(g, "ttl")) && get_uint(ld, s, INT32_MAX, &l->ttl) < 0)
			return -1;
		if (!(s = config_setting_get_member(g, "addresses")))
			return fail(ld, g, "'local' entry needs 'addresses'");
		struct cfg_str *addrs = NULL;
		size_t na = 0;
		int rc = get_str_list(ld, s, &addrs, &na);
		if (rc == 0 && na == 0)
			rc = fail(ld, s, "'addresses' needs at least one address");
		if (rc == 0 && (!(l->v4 = xcalloc(na, 4)) || !(l->v6 = xcalloc(na, 16))))
			rc = fail(ld, s, "out of memory");
		for (size_t j = 0; rc == 0 && j < na; j++) {
			if (inet_pton(AF_INET, addrs[j].s, l->v4[l->n4]) == 1)
				l->n4++;
			else if (inet_pton(AF_INET6, addrs[j].s, l->v6[l->n6]) == 1)
				l->n6++;
			else
				rc = fail(ld, config_setting_get_elem(s, (unsigned)j),
					  "'%s' is not an IPv4 or IPv6 address", addrs[j].s);
		}
		for (size_t j = 0; j < na; j++)
			free(addrs[j].s);
		free(addrs);
		if (rc < 0)
			return -1;
	}
	return 0;
}

/** @return true for YYYY-MM-DD, optionally followed by -preview (or another -word). */
static bool api_version_ok(const char *v)
{
	for (int i = 0; i < 10; i++)
		if (i == 4 || i == 7 ? v[i] != '-' : !(v[i] >= '0' && v[i] <= '9'))
			return false;
	if (v[10] == '\0')
		return true;
	if (v[10] != '-' || !v[11])
		return false;
	for (const char *p = v + 11; *p; p++)
		if (!(*p >= 'a' && *p <= 'z'))
			return false;
	return true;
}

/** discovery's source, interval and timeout. */
static int load_discovery_scalars(struct loader *ld, struct cfg_discovery *d, const config_setting_t *g)
{
	static const char *const sources[] = { "static", "file", "command", "arm", NULL };
	const config_setting_t *s;
	int src;

	if ((s = config_setting_get_member(g, "source"))) {
		if (load_enum(ld, s, sources, &src) < 0)
			return -1;
		d->source = (enum cfg_source)src;
	}
	if ((s = config_setting_get_member(g, "interval"))) {
		if (get_uint(ld, s, 7 * 86400, &d->interval) < 0)
			return -1;
		if (d->interval < 5)
			return fail(ld, s, "'interval' must be at least 5 seconds");
	}
	if ((s = config_setting_get_member(g, "timeout"))) {
		if (get_uint(ld, s, 3600, &d->timeout) < 0)
			return -1;
		if (d->timeout < 1)
			return fail(ld, s, "'timeout' must be at least 1 second");
	}
	return 0;
}

/** discovery's strings and the command's argv, copied. */
static int load_discovery_strings(struct loader *ld, struct cfg_discovery *d, const config_setting_t *g)
{
	const config_setting_t *s;
	const char *v;

	static const struct { const char *key; size_t off; } strs[] = {
		{ "path", offsetof(struct cfg_discovery, path) },
		{ "resource_id", offsetof(struct cfg_discovery, resource_id) },
		{ "arm_endpoint", offsetof(struct cfg_discovery, arm_endpoint) },
		{ "imds_endpoint", offsetof(struct cfg_discovery, imds_endpoint) },
		{ "client_id", offsetof(struct cfg_discovery, client_id) },
		{ "api_version", offsetof(struct cfg_discovery, api_version) },
	};
	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
		if (!(s = config_setting_get_member(g, strs[i].key)))
			continue;
		if (get_string(ld, s, &v) < 0)
			return -1;
		*(char **)((char *)d + strs[i].off) = xstrdup(v);
	}
	if ((s = config_setting_get_member(g, "command"))) {
		struct cfg_str *argv = NULL;
		size_t n = 0;
		if (get_str_list(ld, s, &argv, &n) < 0)
			return -1;
		d->command = xcalloc(n + 1, sizeof(char *));
		for (size_t i = 0; i < n; i++)
			if (d->command)
				d->command[i] = argv[i].s;
			else
				free(argv[i].s);
		free(argv);
		if (n == 0)
			return fail(ld, s, "'command' needs at least the program");
	}
	return 0;
}

/** What each source needs, and the forms of its settings. */
static int check_discovery_source(struct loader *ld, const struct cfg_discovery *d,
				  const config_setting_t *g)
{
	switch (d->source) {
	case SOURCE_STATIC:
		break;
	case SOURCE_FILE:
		if (!d->path)
			return fail(ld, g, "discovery source 'file' needs 'path'");
		break;
	case SOURCE_COMMAND:
		if (!d->command)
			return fail(ld, g, "discovery source 'command' needs 'command'");
		break;
	case SOURCE_ARM:
		if (!d->resource_id)
			return fail(ld, g, "discovery source 'arm' needs 'resource_id'");
		break;
	}
	if (d->resource_id && (d->resource_id[0] != '/' || strpbrk(d->resource_id, "?# \t\r\n")))
		return fail(ld, g, "'resource_id' must be an ARM resource path such as "
			    "/subscriptions/ID/resourceGroups/RG/providers/Microsoft.ContainerRegistry/registries/NAME");
	if (d->api_version && d->source != SOURCE_ARM)
		return fail(ld, config_setting_get_member(g, "api_version"),
			    "'api_version' is a setting of discovery source 'arm' only");
	if (d->api_version && !api_version_ok(d->api_version))
		return fail(ld, config_setting_get_member(g, "api_version"),
			    "'api_version' is '%s'; expected an ARM api-version such as \"2025-11-01\" "
			    "or \"2026-09-01-preview\", or leave it out to let acrdnsd choose", d->api_version);
	for (const char *const *e = (const char *const[]){ d->arm_endpoint, d->imds_endpoint }, *const *end = e + 2;
	     e < end; e++)
		if (*e && strncmp(*e, "https://", 8) != 0 && strncmp(*e, "http://", 7) != 0)
			return fail(ld, g, "'%s' is not an http:// or https:// URL", *e);
	return 0;
}

static int load_discovery(struct loader *ld, struct cfg_discovery *d, const config_setting_t *g)
{
	static const char *const keys[] = { "source", "path", "command", "interval", "timeout",
					    "resource_id", "arm_endpoint", "imds_endpoint",
					    "client_id", "api_version", NULL };

	if (!config_setting_is_group(g))
		return fail(ld, g, "'discovery' must be a group { source = ...; }");
	if (check_keys(ld, g, "discovery", keys) < 0)
		return -1;
	if (load_discovery_scalars(ld, d, g) < 0 || load_discovery_strings(ld, d, g) < 0)
		return -1;
	return check_discovery_source(ld, d, g);
}

static int load_registries(struct loader *ld, struct config *cfg, const config_setting_t *list)
{
	static const char *const keys[] = { "login_server", "data_endpoints", "discovery", NULL };
	int n;

	if (!config_setting_is_list(list))
		return fail(ld, list, "'registries' must be a list ( { login_server = ...; }, ... )");
	n = config_setting_length(list);
	if (!(cfg->registries = xcalloc((size_t)n, sizeof(*cfg->registries))))
		return fail(ld, list, "out of memory");
	for (int i = 0; i < n; i++) {
		const config_setting_t *g = config_setting_get_elem(list, (unsigned)i);
		struct cfg_registry *r = &cfg->registries[i];
		const config_setting_t *s;
		const char *v;
		char why[400];
		cfg->n_registries = (size_t)i + 1;

		r->discovery.interval = 300;
		r->discovery.timeout = 30;
		if (!config_setting_is_group(g))
			return fail(ld, g, "each registry must be a group { login_server = ...; }");
		if (check_keys(ld, g, "registry", keys) < 0)
			return -1;
		r->line = config_setting_source_line(g);
		if (!(s = config_setting_get_member(g, "login_server")))
			return fail(ld, g, "registry needs a 'login_server'");
		if (get_string(ld, s, &v) < 0)
			return -1;
		r->login_server.s = xstrdup(v);
		r->login_server.line = config_setting_source_line(s);
		if (regname_check_login_server(v, why, sizeof(why)) < 0)
			return fail(ld, s, "%s", why);
		for (int j = 0; j < i; j++)
			if (strcasecmp(cfg->registries[j].login_server.s, v) == 0)
				return fail(ld, s, "registry '%s' is already configured (line %d)", v,
					    cfg->registries[j].line);
		char region[64];
		bool ecr = regname_ecr_region(v, region, sizeof(region));
		if (ecr && (s = config_setting_get_member(g, "data_endpoints")))
			return fail(ld, s, "registry '%s' is an Amazon ECR registry: it allows "
				    "api.ecr.%s.amazonaws.com and its region's layer bucket by itself; "
				    "remove 'data_endpoints'", r->login_server.s, region);
		if (ecr && (s = config_setting_get_member(g, "discovery")))
			return fail(ld, s, "registry '%s' is an Amazon ECR registry, whose names follow "
				    "from its login server: remove 'discovery'", r->login_server.s);
		if ((s = config_setting_get_member(g, "data_endpoints"))) {
			if (get_str_list(ld, s, &r->data_endpoints, &r->n_data_endpoints) < 0)
				return -1;
			for (size_t j = 0; j < r->n_data_endpoints; j++)
				if (regname_check_endpoint(r->login_server.s, r->data_endpoints[j].s,
							  why, sizeof(why)) < 0)
					return fail(ld, config_setting_get_elem(s, (unsigned)j), "%s", why);
		}
		if ((s = config_setting_get_member(g, "discovery")) &&
		    load_discovery(ld, &r->discovery, s) < 0)
			return -1;
	}
	return 0;
}

static int load_root(struct loader *ld, struct config *cfg, const config_setting_t *root)
{
	static const char *const modes[] = { "allowlist", "filter", NULL };
	static const char *const denies[] = { "nxdomain", "nodata", "refused", NULL };
	const char *const *keys = config_keys;
	const config_setting_t *s;
	const char *v;
	int e;

	/* config_keys starts with the top-level keys, up to the first "group.key". */
	{
		const char *top[32];
		size_t n = 0;
		for (; *keys && !strchr(*keys, '.') && n < 31; keys++)
			top[n++] = *keys;
		top[n] = NULL;
		if (check_keys(ld, root, "the configuration", top) < 0)
			return -1;
	}
	if ((s = config_setting_get_member(root, "listen"))) {
		if (load_addrs(ld, s, &cfg->listen, &cfg->n_listen) < 0)
			return -1;
		cfg->listen_set = true;
	}
	if (!cfg->listen) {
		/* Loopback only unless told otherwise. */
		cfg->listen = xcalloc(2, sizeof(*cfg->listen));
		if (!cfg->listen)
			return fail(ld, NULL, "out of memory");
		address_parse("127.0.0.1:53", 53, &cfg->listen[0]);
		address_parse("[::1]:53", 53, &cfg->listen[1]);
		cfg->n_listen = 2;
	}
	if ((s = config_setting_get_member(root, "access"))) {
		if (load_nets(ld, s, &cfg->access, &cfg->n_access) < 0)
			return -1;
	} else {
		cfg->access = xcalloc(2, sizeof(*cfg->access));
		if (!cfg->access)
			return fail(ld, NULL, "out of memory");
		address_parse_net("127.0.0.0/8", &cfg->access[0]);
		address_parse_net("::1/128", &cfg->access[1]);
		cfg->n_access = 2;
	}
	if (!(s = config_setting_get_member(root, "upstreams")))
		return fail(ld, root, "'upstreams' is missing: name at least one DNS server");
	if (load_upstreams(ld, cfg, s) < 0)
		return -1;
	if ((s = config_setting_get_member(root, "forward")) && load_forward(ld, cfg, s) < 0)
		return -1;
	if ((s = config_setting_get_member(root, "mode"))) {
		if (load_enum(ld, s, modes, &e) < 0)
			return -1;
		cfg->mode = (enum cfg_mode)e;
	}
	if ((s = config_setting_get_member(root, "audit"))) {
		if (config_setting_type(s) != CONFIG_TYPE_BOOL)
			return fail(ld, s, "'audit' must be true or false");
		cfg->audit = config_setting_get_bool(s) != 0;
	}
	if ((s = config_setting_get_member(root, "deny_response"))) {
		if (load_enum(ld, s, denies, &e) < 0)
			return -1;
		cfg->deny_response = (enum cfg_deny_response)e;
	}
	if ((s = config_setting_get_member(root, "deny_ttl")) &&
	    get_uint(ld, s, 86400, &cfg->deny_ttl) < 0)
		return -1;
	if ((s = config_setting_get_member(root, "rules")) &&
	    get_str_list(ld, s, &cfg->rules, &cfg->n_rules) < 0)
		return -1;
	if ((s = config_setting_get_member(root, "allow")) &&
	    get_str_list(ld, s, &cfg->allow, &cfg->n_allow) < 0)
		return -1;
	if ((s = config_setting_get_member(root, "deny")) &&
	    get_str_list(ld, s, &cfg->deny, &cfg->n_deny) < 0)
		return -1;
	if ((s = config_setting_get_member(root, "local")) && load_local(ld, cfg, s) < 0)
		return -1;
	if ((s = config_setting_get_member(root, "registries")) && load_registries(ld, cfg, s) < 0)
		return -1;
	if ((s = config_setting_get_member(root, "cache")) && load_cache(ld, cfg, s) < 0)
		return -1;
	if ((s = config_setting_get_member(root, "log")) && load_log(ld, cfg, s) < 0)
		return -1;
	if ((s = config_setting_get_member(root, "rate_limit")) && load_rate_limit(ld, cfg, s) < 0)
		return -1;
	if ((s = config_setting_get_member(root, "tcp")) && load_tcp(ld, cfg, s) < 0)
		return -1;
	if ((s = config_setting_get_member(root, "state_dir"))) {
		if (get_string(ld, s, &v) < 0)
			return -1;
		if (v[0] != '/')
			return fail(ld, s, "'state_dir' must be an absolute path");
		free(cfg->state_dir);
		cfg->state_dir = xstrdup(v);
	}
	if ((s = config_setting_get_member(root, "nftables")) && load_nftables(ld, cfg, s) < 0)
		return -1;
	if ((s = config_setting_get_member(root, "workers")) && get_uint(ld, s, 64, &cfg->workers) < 0)
		return -1;
	if ((s = config_setting_get_member(root, "user"))) {
		if (get_string(ld, s, &v) < 0)
			return -1;
		if (!*v)
			return fail(ld, s, "'user' is empty; name a user, or \"root\" to keep root");
		free(cfg->user);
		cfg->user = xstrdup(v);
		cfg->user_set = true;
	}
	if ((s = config_setting_get_member(root, "group"))) {
		if (get_string(ld, s, &v) < 0)
			return -1;
		if (!*v)
			return fail(ld, s, "'group' is empty");
		cfg->group = xstrdup(v);
	}
	if ((s = config_setting_get_member(root, "metrics_listen"))) {
		if (get_string(ld, s, &v) < 0)
			return -1;
		if (address_parse(v, 9153, &cfg->metrics_listen) < 0)
			return fail(ld, s, "'metrics_listen' is '%s'; expected an address, as in "
				    "\"127.0.0.1:9153\"", v);
	}
	if ((s = config_setting_get_member(root, "control_socket"))) {
		if (get_string(ld, s, &v) < 0)
			return -1;
		if (v[0] != '/' || strlen(v) >= 108)
			return fail(ld, s, "'control_socket' must be an absolute path under 108 bytes");
		free(cfg->control_socket);
		cfg->control_socket = xstrdup(v);
	}
	return 0;
}

struct config *config_load(const char *path, char *err, size_t errlen)
{
	struct loader ld = { path, err, errlen };
	struct config *cfg = calloc(1, sizeof(*cfg));
	config_t cf;
	char *copy;

	if (!cfg) {
		snprintf(err, errlen, "%s: out of memory", path);
		return NULL;
	}
	cfg->path = xstrdup(path);
	copy = xstrdup(path);
	cfg->dir = copy ? xstrdup(dirname(copy)) : NULL;
	free(copy);
	cfg->mode = MODE_ALLOWLIST;
	cfg->deny_response = DENY_NXDOMAIN;
	cfg->deny_ttl = 60;
	cfg->cache_size = 64ULL * 1024 * 1024;
	cfg->min_ttl = 0;
	cfg->max_ttl = 86400;
	cfg->negative_ttl = 300;
	cfg->stale_ttl = 86400;
	cfg->stale_recheck = 30;
	cfg->state_dir = xstrdup(LOCALSTATEDIR "/lib/acrdns");
	cfg->control_socket = xstrdup(RUNSTATEDIR "/acrdns/control.sock");
	cfg->user = xstrdup("acrdns");
	snprintf(cfg->nft.family, sizeof(cfg->nft.family), "inet");
	snprintf(cfg->nft.table, sizeof(cfg->nft.table), "acrdns");
	snprintf(cfg->nft.set4, sizeof(cfg->nft.set4), "allow4");
	snprintf(cfg->nft.set6, sizeof(cfg->nft.set6), "allow6");
	cfg->nft.grace = 300;
	cfg->workers = 1;
	cfg->log_level = LOG_LVL_INFO;
	cfg->log_queries = QLOG_DENIED;
	cfg->tcp_max_connections = 512;
	cfg->tcp_max_per_client = 32;
	cfg->tcp_idle_timeout = 10;
	if (!cfg->path || !cfg->dir || !cfg->state_dir || !cfg->control_socket || !cfg->user) {
		snprintf(err, errlen, "%s: out of memory", path);
		config_free(cfg);
		return NULL;
	}

	config_init(&cf);
	config_set_include_dir(&cf, cfg->dir);
	if (config_read_file(&cf, path) != CONFIG_TRUE) {
		if (config_error_type(&cf) == CONFIG_ERR_FILE_IO)
			snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
		else {
			const char *file = config_error_file(&cf) ? config_error_file(&cf) : path;
			char hint[160] = "";
			if (config_error_text(&cf) && strcmp(config_error_text(&cf), "syntax error") == 0)
				syntax_hint(file, config_error_line(&cf), hint, sizeof(hint));
			snprintf(err, errlen, "%s:%d: %s%s", file, config_error_line(&cf),
				 config_error_text(&cf), hint);
		}
		config_destroy(&cf);
		config_free(cfg);
		return NULL;
	}
	int rc = load_root(&ld, cfg, config_root_setting(&cf));
	config_destroy(&cf);
	if (rc < 0) {
		config_free(cfg);
		return NULL;
	}
	return cfg;
}

static void free_strs(struct cfg_str *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(list[i].s);
	free(list);
}

void config_free(struct config *cfg)
{
	if (!cfg)
		return;
	free(cfg->path);
	free(cfg->dir);
	free(cfg->listen);
	free(cfg->access);
	for (size_t i = 0; i < cfg->n_upstreams; i++)
		free(cfg->upstreams[i].file);
	free(cfg->upstreams);
	for (size_t i = 0; i < cfg->n_forward; i++) {
		for (size_t j = 0; j < cfg->forward[i].n_upstreams; j++)
			free(cfg->forward[i].upstreams[j].file);
		free(cfg->forward[i].upstreams);
		free(cfg->forward[i].name);
	}
	free(cfg->forward);
	free_strs(cfg->rules, cfg->n_rules);
	free_strs(cfg->allow, cfg->n_allow);
	free_strs(cfg->deny, cfg->n_deny);
	for (size_t i = 0; i < cfg->n_local; i++) {
		free(cfg->local[i].v4);
		free(cfg->local[i].v6);
	}
	free(cfg->local);
	for (size_t i = 0; i < cfg->n_registries; i++) {
		struct cfg_registry *r = &cfg->registries[i];
		struct cfg_discovery *d = &r->discovery;
		free(r->login_server.s);
		free_strs(r->data_endpoints, r->n_data_endpoints);
		free(d->path);
		if (d->command)
			for (char **a = d->command; *a; a++)
				free(*a);
		free(d->command);
		free(d->resource_id);
		free(d->arm_endpoint);
		free(d->imds_endpoint);
		free(d->client_id);
		free(d->api_version);
	}
	free(cfg->registries);
	free(cfg->state_dir);
	free(cfg->control_socket);
	free(cfg->user);
	free(cfg->group);
	free(cfg->rate_limit.exempt);
	free(cfg);
}
