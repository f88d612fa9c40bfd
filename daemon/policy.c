/**
 * \file policy.c
 * Policy construction and the per-query decision.  Precedence: a local
 * name first; then an exact rule; then the longest wildcard apex; deny
 * beats allow at the same name; else the mode's default.  A registry's
 * names are exact allow rules kept in a table of their own, so that a
 * discovery change rebuilds a few names instead of every rule.
 */
#include "autoconf.h"

#include <errno.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"
#include "regname.h"
#include "wire.h"

static const char *const verdict_names[] = { "allow", "pass", "deny", "local", "audit" };

const char *policy_verdict_name(enum verdict v)
{
	return verdict_names[v];
}

static void free_registries(struct policy_registry *regs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(regs[i].login_server);
		for (size_t j = 0; j < regs[i].n_endpoints; j++)
			free(regs[i].endpoints[j]);
		free(regs[i].endpoints);
	}
	free(regs);
}

void policy_names_free(struct policy_names *names)
{
	if (!names)
		return;
	rules_free(names->table);
	free_registries(names->registries, names->n_registries);
	free(names);
}

void policy_free(struct policy *p)
{
	if (!p)
		return;
	rules_free(p->rules);
	rules_free(p->names);
	free_registries(p->registries, p->n_registries);
	for (size_t i = 0; i < p->n_files; i++)
		free(p->files[i]);
	free(p->files);
	free(p->file_counts);
	free(p);
}

static int add_file(struct policy *p, const char *path, char *err, size_t errlen)
{
	size_t before = rules_count(p->rules);
	char **files = realloc(p->files, (p->n_files + 1) * sizeof(*files));
	size_t *counts;

	if (!files)
		goto oom;
	p->files = files;
	counts = realloc(p->file_counts, (p->n_files + 1) * sizeof(*counts));
	if (!counts)
		goto oom;
	p->file_counts = counts;
	if (!(p->files[p->n_files] = strdup(path)))
		goto oom;
	p->n_files++;
	if (rules_load_file(p->rules, path, err, errlen) < 0)
		return -1;
	p->file_counts[p->n_files - 1] = rules_count(p->rules) - before;
	return 0;
oom:
	snprintf(err, errlen, "%s: out of memory", path);
	return -1;
}

/** A directory that does not exist is an empty glob; any other error stops it. */
static int glob_error(const char *path, int err)
{
	(void)path;
	return err != ENOENT && err != ENOTDIR;
}

static int load_rule_files(struct policy *p, const struct config *cfg, char *err, size_t errlen)
{
	for (size_t i = 0; i < cfg->n_rules; i++) {
		char pattern[4096];
		glob_t g;
		const char *spec = cfg->rules[i].s;

		if (spec[0] == '/')
			snprintf(pattern, sizeof(pattern), "%s", spec);
		else
			snprintf(pattern, sizeof(pattern), "%s/%s", cfg->dir, spec);
		int rc = glob(pattern, GLOB_NOMAGIC, glob_error, &g);
		if (rc == GLOB_NOMATCH)
			continue; /* a glob that matches no file: an empty rules.d */
		if (rc != 0) {
			snprintf(err, errlen, "%s:%d: cannot expand '%s'", cfg->path,
				 cfg->rules[i].line, spec);
			return -1;
		}
		for (size_t j = 0; j < g.gl_pathc; j++) {
			if (add_file(p, g.gl_pathv[j], err, errlen) < 0) {
				globfree(&g);
				return -1;
			}
		}
		globfree(&g);
	}
	return 0;
}

static int add_inline(struct policy *p, const struct config *cfg, bool allow,
		      const struct cfg_str *list, size_t n, char *err, size_t errlen)
{
	char why[300];
	int src = rules_source(p->rules, cfg->path);

	for (size_t i = 0; i < n; i++) {
		struct rule_origin o = { (uint16_t)src, (uint32_t)list[i].line };
		if (src < 0 || rules_add(p->rules, allow, list[i].s, o, why, sizeof(why)) < 0) {
			snprintf(err, errlen, "%s:%d: %s", cfg->path, list[i].line,
				 src < 0 ? "out of memory" : why);
			return -1;
		}
	}
	return 0;
}

/**
 * Allow one registry name.  A name the rule table allows exactly already
 * is not counted again: one table would have held one rule for both.
 */
static int allow_name(struct policy_names *pn, const struct rules *rules, const char *name,
		      int src, uint32_t line)
{
	uint8_t wire[WIRE_NAME_MAX + 1];
	int len = wire_name_from_str(name, wire);
	struct rule_origin o = { (uint16_t)src, line };

	if (len < 0)
		return -1;
	size_t before = rules_count(pn->table);
	if (rules_add_wire(pn->table, RULE_EXACT_ALLOW, wire, (size_t)len, o) < 0)
		return -1;
	const struct rule_node *n = rules_find(rules, wire, (size_t)len);
	if (rules_count(pn->table) > before && !(n && (n->kinds & (1u << RULE_EXACT_ALLOW))))
		pn->n_added++;
	return 0;
}

static int allow_endpoint(struct policy_names *pn, const struct rules *rules,
			  struct policy_registry *pr, const char *name, int src, uint32_t line)
{
	for (size_t i = 0; i < pr->n_endpoints; i++)
		if (strcasecmp(pr->endpoints[i], name) == 0)
			return 0;
	char **e = realloc(pr->endpoints, (pr->n_endpoints + 1) * sizeof(*e));
	if (!e)
		return -1;
	pr->endpoints = e;
	if (!(e[pr->n_endpoints] = strdup(name)))
		return -1;
	pr->n_endpoints++;
	return allow_name(pn, rules, name, src, line);
}

struct policy_names *policy_names_new(const struct policy *p, const struct config *cfg,
				      char **const *extra, char *err, size_t errlen)
{
	struct policy_names *pn = calloc(1, sizeof(*pn));

	if (!pn || !(pn->table = rules_new()) ||
	    !(pn->registries = calloc(cfg->n_registries ? cfg->n_registries : 1, sizeof(*pn->registries))))
		goto oom;
	pn->n_registries = cfg->n_registries;
	for (size_t i = 0; i < cfg->n_registries; i++) {
		const struct cfg_registry *r = &cfg->registries[i];
		struct policy_registry *pr = &pn->registries[i];
		char srcname[300];

		snprintf(srcname, sizeof(srcname), "registry %s", r->login_server.s);
		int src = rules_source(pn->table, srcname);
		if (src < 0 || !(pr->login_server = strdup(r->login_server.s)) ||
		    allow_name(pn, p->rules, r->login_server.s, src, (uint32_t)r->login_server.line) < 0)
			goto oom;
		for (size_t j = 0; j < r->n_data_endpoints; j++)
			if (allow_endpoint(pn, p->rules, pr, r->data_endpoints[j].s, src,
					   (uint32_t)r->data_endpoints[j].line) < 0)
				goto oom;
		char region[64], name[WIRE_NAME_STRLEN];
		if (regname_ecr_region(r->login_server.s, region, sizeof(region))) {
			/* ECR: tokens from the regional API; layers from the AWS-owned
			 * bucket of the region, exactly, which beats the shipped
			 * *.s3.<region>.amazonaws.com deny as any exact rule does. */
			snprintf(name, sizeof(name), "api.ecr.%s.amazonaws.com", region);
			if (allow_endpoint(pn, p->rules, pr, name, src, (uint32_t)r->login_server.line) < 0)
				goto oom;
			snprintf(name, sizeof(name), "prod-%s-starport-layer-bucket.s3.%s.amazonaws.com",
				 region, region);
			if (allow_endpoint(pn, p->rules, pr, name, src, (uint32_t)r->login_server.line) < 0)
				goto oom;
		}
		if (extra && extra[i]) {
			snprintf(srcname, sizeof(srcname), "discovery %s", r->login_server.s);
			int dsrc = rules_source(pn->table, srcname);
			if (dsrc < 0)
				goto oom;
			for (char *const *e = extra[i]; *e; e++)
				if (allow_endpoint(pn, p->rules, pr, *e, dsrc, 0) < 0)
					goto oom;
		}
	}
	return pn;
oom:
	snprintf(err, errlen, "%s: out of memory building the registry rules", cfg->path);
	policy_names_free(pn);
	return NULL;
}

void policy_names_swap(struct policy *p, struct policy_names *names)
{
	struct policy_names old = { p->names, p->registries, p->n_registries, p->n_names_added };

	p->names = names->table;
	p->registries = names->registries;
	p->n_registries = names->n_registries;
	p->n_names_added = names->n_added;
	*names = old;
}

size_t policy_rule_count(const struct policy *p)
{
	return rules_count(p->rules) + p->n_names_added;
}

struct policy *policy_new(const struct config *cfg, char **const *extra_endpoints,
			  char *err, size_t errlen)
{
	struct policy *p = calloc(1, sizeof(*p));
	struct policy_names *names = NULL;

	if (!p || !(p->rules = rules_new())) {
		snprintf(err, errlen, "%s: out of memory", cfg->path);
		policy_free(p);
		return NULL;
	}
	p->mode = cfg->mode;
	p->audit = cfg->audit;
	p->config_path = cfg->path;
	p->local = cfg->local;
	p->n_local = cfg->n_local;
	if (load_rule_files(p, cfg, err, errlen) < 0 ||
	    add_inline(p, cfg, true, cfg->allow, cfg->n_allow, err, errlen) < 0 ||
	    add_inline(p, cfg, false, cfg->deny, cfg->n_deny, err, errlen) < 0) {
		policy_free(p);
		return NULL;
	}
	for (size_t i = 0; i < cfg->n_local; i++) {
		if (rules_set_local(p->rules, cfg->local[i].name, (size_t)cfg->local[i].name_len,
				    (int32_t)i) < 0) {
			snprintf(err, errlen, "%s: out of memory", cfg->path);
			policy_free(p);
			return NULL;
		}
	}
	if (!(names = policy_names_new(p, cfg, extra_endpoints, err, errlen))) {
		policy_free(p);
		return NULL;
	}
	policy_names_swap(p, names);
	policy_names_free(names);
	return p;
}

/* Served here with no data: every type is NODATA, with an SOA. */
static const struct cfg_local resolver_arpa = { .ttl = 3600 };

/** @return true for resolver.arpa and the names below it. */
static bool in_resolver_arpa(const uint8_t *name, size_t len)
{
	static const uint8_t zone[] = "\x08" "resolver" "\x04" "arpa"; /* with the root label's 0 */

	if (len < sizeof(zone) || memcmp(name + len - sizeof(zone), zone, sizeof(zone)) != 0)
		return false;
	/* At a label boundary, not "xresolver.arpa". */
	size_t at = 0;
	while (at < len - sizeof(zone))
		at += (size_t)name[at] + 1;
	return at == len - sizeof(zone);
}

const struct cfg_local *policy_local(const struct policy *p, const struct policy_decision *d)
{
	return d->local >= 0 ? &p->local[d->local] : &resolver_arpa;
}

static void decide(const struct policy *p, const uint8_t *name, size_t len,
		   struct policy_decision *d)
{
	const struct rule_node *n;

	uint32_t h = rules_hash(name, len);

	d->local = -1;
	d->node = NULL;
	d->kind = -1;
	if (in_resolver_arpa(name, len)) {
		d->verdict = VERDICT_LOCAL;
		return;
	}
	n = rules_find_hashed(p->rules, name, len, h);
	if (n) {
		if (n->local >= 0) {
			d->verdict = VERDICT_LOCAL;
			d->local = n->local;
			d->node = n;
			return;
		}
		if (n->kinds & (1u << RULE_EXACT_DENY)) {
			d->verdict = VERDICT_DENY;
			d->kind = RULE_EXACT_DENY;
			d->node = n;
			return;
		}
		if (n->kinds & (1u << RULE_EXACT_ALLOW)) {
			d->verdict = VERDICT_ALLOW;
			d->kind = RULE_EXACT_ALLOW;
			d->node = n;
			return;
		}
	}
	/* A registry's name ranks as an exact allow written after every rule:
	 * below a local name and an exact deny, above any wildcard, and a rule
	 * that allows the same name keeps its origin, as a repeated rule does.
	 * Registries hold exact names only, so no suffix is looked up here. */
	if (p->n_registries && (n = rules_find_hashed(p->names, name, len, h))) {
		d->verdict = VERDICT_ALLOW;
		d->kind = RULE_EXACT_ALLOW;
		d->node = n;
		return;
	}
	/* Proper suffixes, longest first: the first wildcard found is the most specific. */
	while (name[0] != 0) {
		len -= (size_t)name[0] + 1;
		name += name[0] + 1;
		n = rules_find(p->rules, name, len);
		if (!n)
			continue;
		if (n->kinds & (1u << RULE_WILD_DENY)) {
			d->verdict = VERDICT_DENY;
			d->kind = RULE_WILD_DENY;
			d->node = n;
			return;
		}
		if (n->kinds & (1u << RULE_WILD_ALLOW)) {
			d->verdict = VERDICT_ALLOW;
			d->kind = RULE_WILD_ALLOW;
			d->node = n;
			return;
		}
	}
	d->verdict = p->mode == MODE_ALLOWLIST ? VERDICT_DENY : VERDICT_PASS;
}

void policy_decide(const struct policy *p, const uint8_t *name, size_t len,
		   struct policy_decision *d)
{
	decide(p, name, len, d);
	/* Roll-out: the rule that would deny stays in the decision, for the log. */
	if (p->audit && d->verdict == VERDICT_DENY)
		d->verdict = VERDICT_AUDIT;
}

void policy_each_shared(const struct policy *p, void (*fn)(void *arg, const char *warning),
			void *arg)
{
	char text[1024];

	for (size_t i = 0; i < rules_sources(p->rules); i++) {
		const char *shared = rules_source_shared(p->rules, (uint16_t)i);
		if (!shared)
			continue;
		snprintf(text, sizeof(text), "%s allows %s, a registry shared by every account on "
			 "it: DNS cannot tell one account from another, so it allows pushes to any "
			 "account there too, a way out for data. Safer: pull through a cache in your "
			 "own registry (ACR cache rules, 'az acr cache create') and allow only that "
			 "registry", rules_source_name(p->rules, (uint16_t)i), shared);
		fn(arg, text);
	}
}

void policy_describe(const struct policy *p, const struct policy_decision *d,
		     char *buf, size_t len)
{
	char name[WIRE_NAME_STRLEN];

	if (d->verdict == VERDICT_LOCAL && !d->node) {
		snprintf(buf, len, "local resolver.arpa (built in: no designated resolvers, RFC 9462)");
		return;
	}
	if (d->verdict == VERDICT_LOCAL) {
		wire_name_str(rules_node_name(p->rules, d->node), name);
		name[strlen(name) - 1] = '\0';
		snprintf(buf, len, "local %s (%s:%d)", name, p->config_path, p->local[d->local].line);
		return;
	}
	if (!d->node) {
		snprintf(buf, len, d->verdict == VERDICT_DENY || d->verdict == VERDICT_AUDIT
					   ? "default: not on the allowlist" : "default: filter mode forwards");
		return;
	}
	const struct rules *table = p->names && rules_holds(p->names, d->node) ? p->names : p->rules;
	const struct rule_origin *o = &d->node->origin[d->kind];
	bool wild = d->kind == RULE_WILD_ALLOW || d->kind == RULE_WILD_DENY;
	bool allow = d->kind == RULE_EXACT_ALLOW || d->kind == RULE_WILD_ALLOW;
	const uint8_t *apex = rules_node_name(table, d->node);
	wire_name_str(apex, name);
	if (apex[0])
		name[strlen(name) - 1] = '\0'; /* as rules are written: no trailing dot */
	if (o->line)
		snprintf(buf, len, "%s %s%s (%s:%u)", allow ? "allow" : "deny",
			 wild ? (apex[0] ? "*." : "*") : "", apex[0] || !wild ? name : "",
			 rules_source_name(table, o->source), o->line);
	else
		snprintf(buf, len, "%s %s%s (%s)", allow ? "allow" : "deny",
			 wild ? (apex[0] ? "*." : "*") : "", apex[0] || !wild ? name : "",
			 rules_source_name(table, o->source));
}
