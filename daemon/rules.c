/**
 * \file rules.c
 * Open-addressing hash of rule names.  Slots hold 32-bit indexes into a
 * dense node array and names live in one arena, so a million rules cost
 * tens of megabytes, not hundreds.
 */
#include "autoconf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "rules.h"
#include "wire.h"

#define EMPTY UINT32_MAX

struct rules {
	uint32_t *slots;        /**< node index or EMPTY */
	size_t mask;            /**< slot count - 1 */
	struct rule_node *nodes;
	size_t n_nodes, cap_nodes;
	uint8_t *arena;         /**< wire names, back to back */
	size_t arena_len, arena_cap;
	char **sources;
	char **shared;          /**< per source: the shared registry it allows, or NULL */
	size_t n_sources;
	size_t n_rules;
};

struct rules *rules_new(void)
{
	struct rules *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->mask = 1023;
	r->slots = malloc((r->mask + 1) * sizeof(*r->slots));
	if (!r->slots) {
		free(r);
		return NULL;
	}
	memset(r->slots, 0xff, (r->mask + 1) * sizeof(*r->slots));
	return r;
}

void rules_free(struct rules *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n_sources; i++) {
		free(r->sources[i]);
		free(r->shared[i]);
	}
	free(r->sources);
	free(r->shared);
	free(r->slots);
	free(r->nodes);
	free(r->arena);
	free(r);
}

int rules_source(struct rules *r, const char *name)
{
	for (size_t i = 0; i < r->n_sources; i++)
		if (strcmp(r->sources[i], name) == 0)
			return (int)i;
	if (r->n_sources >= UINT16_MAX)
		return -1;
	char **sh = realloc(r->shared, (r->n_sources + 1) * sizeof(*sh));
	if (!sh)
		return -1;
	r->shared = sh;
	sh[r->n_sources] = NULL;
	char **s = realloc(r->sources, (r->n_sources + 1) * sizeof(*s));
	if (!s)
		return -1;
	r->sources = s;
	if (!(s[r->n_sources] = strdup(name)))
		return -1;
	return (int)r->n_sources++;
}

size_t rules_sources(const struct rules *r)
{
	return r->n_sources;
}

const char *rules_source_shared(const struct rules *r, uint16_t i)
{
	return i < r->n_sources ? r->shared[i] : NULL;
}

#define DIRECTIVE "acrdns:"

/**
 * A comment line "# acrdns: WORD ARGS" is a directive to acrdnsd, not a
 * remark: an unknown word is an error rather than silently ignored.
 * @return 1 when line was a directive and is handled, 0 when it is not
 *         one, -1 with err set when it is one acrdnsd does not know
 */
static int directive(struct rules *r, int src, char *line, const char *path, uint32_t lineno,
		     char *err, size_t errlen)
{
	char *p = line + strspn(line, " \t");

	if (*p != '#')
		return 0;
	p += 1 + strspn(p + 1, " \t");
	if (strncmp(p, DIRECTIVE, strlen(DIRECTIVE)) != 0)
		return 0;
	p += strlen(DIRECTIVE);
	p += strspn(p, " \t");
	size_t end = strcspn(p, "\r\n");
	while (end > 0 && (p[end - 1] == ' ' || p[end - 1] == '\t'))
		end--;
	p[end] = '\0';
	static const char shared[] = "shared-registry";
	if (strncmp(p, shared, sizeof(shared) - 1) == 0 &&
	    (p[sizeof(shared) - 1] == ' ' || p[sizeof(shared) - 1] == '\t')) {
		char *name = p + sizeof(shared) - 1;
		name += strspn(name, " \t");
		free(r->shared[src]);
		if (!(r->shared[src] = strdup(name))) {
			snprintf(err, errlen, "%s:%u: out of memory", path, lineno);
			return -1;
		}
		return 1;
	}
	snprintf(err, errlen, "%s:%u: unknown directive '# " DIRECTIVE " %.80s'; the one known is "
		 "'# " DIRECTIVE " shared-registry NAME' (write other comments without 'acrdns:')",
		 path, lineno, p);
	return -1;
}

const char *rules_source_name(const struct rules *r, uint16_t i)
{
	return i < r->n_sources ? r->sources[i] : "?";
}

bool rules_holds(const struct rules *r, const struct rule_node *n)
{
	/* As integers: pointers into different arrays do not compare in C. */
	uintptr_t at = (uintptr_t)n, first = (uintptr_t)r->nodes;

	return r->n_nodes && at >= first && at < first + r->n_nodes * sizeof(*n);
}

const uint8_t *rules_node_name(const struct rules *r, const struct rule_node *n)
{
	return r->arena + n->name_off;
}

static size_t slot_of(const struct rules *r, const uint8_t *name, size_t len, uint32_t h)
{
	size_t i = h & r->mask;

	for (;;) {
		uint32_t idx = r->slots[i];
		if (idx == EMPTY)
			return i;
		const struct rule_node *n = &r->nodes[idx];
		if (n->hash == h && n->name_len == len &&
		    memcmp(r->arena + n->name_off, name, len) == 0)
			return i;
		i = (i + 1) & r->mask;
	}
}

uint32_t rules_hash(const uint8_t *name, size_t len)
{
	return (uint32_t)hash_bytes(name, len);
}

const struct rule_node *rules_find_hashed(const struct rules *r, const uint8_t *name, size_t len,
					  uint32_t h)
{
	uint32_t idx = r->slots[slot_of(r, name, len, h)];

	return idx == EMPTY ? NULL : &r->nodes[idx];
}

const struct rule_node *rules_find(const struct rules *r, const uint8_t *name, size_t len)
{
	return rules_find_hashed(r, name, len, rules_hash(name, len));
}

static int grow(struct rules *r)
{
	size_t cap = (r->mask + 1) * 2;
	uint32_t *slots = malloc(cap * sizeof(*slots));

	if (!slots)
		return -1;
	memset(slots, 0xff, cap * sizeof(*slots));
	free(r->slots);
	r->slots = slots;
	r->mask = cap - 1;
	for (size_t k = 0; k < r->n_nodes; k++) {
		size_t i = r->nodes[k].hash & r->mask;
		while (slots[i] != EMPTY)
			i = (i + 1) & r->mask;
		slots[i] = (uint32_t)k;
	}
	return 0;
}

/** @return the node for name, created when absent, or NULL when out of memory. */
static struct rule_node *node_get(struct rules *r, const uint8_t *name, size_t len)
{
	uint32_t h = (uint32_t)hash_bytes(name, len);
	size_t i = slot_of(r, name, len, h);

	if (r->slots[i] != EMPTY)
		return &r->nodes[r->slots[i]];
	if ((r->n_nodes + 1) * 4 > (r->mask + 1) * 3) {
		if (grow(r) < 0)
			return NULL;
		i = slot_of(r, name, len, h);
	}
	if (r->n_nodes == r->cap_nodes) {
		size_t cap = r->cap_nodes ? r->cap_nodes * 2 : 256;
		struct rule_node *n = realloc(r->nodes, cap * sizeof(*n));
		if (!n)
			return NULL;
		r->nodes = n;
		r->cap_nodes = cap;
	}
	if (r->arena_len + len > r->arena_cap) {
		size_t cap = r->arena_cap ? r->arena_cap * 2 : 4096;
		while (cap < r->arena_len + len)
			cap *= 2;
		if (cap > UINT32_MAX)
			return NULL;
		uint8_t *a = realloc(r->arena, cap);
		if (!a)
			return NULL;
		r->arena = a;
		r->arena_cap = cap;
	}
	struct rule_node *n = &r->nodes[r->n_nodes];
	memset(n, 0, sizeof(*n));
	n->name_off = (uint32_t)r->arena_len;
	n->hash = h;
	n->name_len = (uint8_t)len;
	n->local = -1;
	memcpy(r->arena + r->arena_len, name, len);
	r->arena_len += len;
	r->slots[i] = (uint32_t)r->n_nodes++;
	return n;
}

int rules_add_wire(struct rules *r, enum rule_kind kind, const uint8_t *name, size_t len,
		   struct rule_origin origin)
{
	struct rule_node *n = node_get(r, name, len);

	if (!n)
		return -1;
	/* A repeated rule keeps its first origin: that is the line to edit. */
	if (!(n->kinds & (1u << kind))) {
		n->kinds |= (uint8_t)(1u << kind);
		n->origin[kind] = origin;
		r->n_rules++;
	}
	return 0;
}

int rules_set_local(struct rules *r, const uint8_t *name, size_t len, int32_t idx)
{
	struct rule_node *n = node_get(r, name, len);

	if (!n)
		return -1;
	n->local = idx;
	return 0;
}

int rules_add(struct rules *r, bool allow, const char *text, struct rule_origin origin,
	      char *why, size_t whylen)
{
	uint8_t name[WIRE_NAME_MAX + 1];
	bool wild = false;
	int len;

	if (strcmp(text, "*") == 0 || strcmp(text, "*.") == 0) {
		wild = true;
		name[0] = 0;
		len = 1;
	} else {
		if (text[0] == '*' && text[1] == '.') {
			wild = true;
			text += 2;
		}
		len = wire_name_from_str(text, name);
		if (len < 0) {
			snprintf(why, whylen, "'%s%s' is not a domain name", wild ? "*." : "", text);
			return -1;
		}
		/* '*' is only meaningful as the whole first label. */
		for (const uint8_t *p = name; *p; p += *p + 1)
			if (memchr(p + 1, '*', *p)) {
				snprintf(why, whylen, "'%s%s': '*' may only stand as the first label, "
					 "as in *.example.com", wild ? "*." : "", text);
				return -1;
			}
	}
	enum rule_kind kind = wild ? (allow ? RULE_WILD_ALLOW : RULE_WILD_DENY)
				   : (allow ? RULE_EXACT_ALLOW : RULE_EXACT_DENY);
	if (rules_add_wire(r, kind, name, (size_t)len, origin) < 0) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	return 0;
}

long rules_load_file(struct rules *r, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	long n;

	if (!f) {
		snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
		return -1;
	}
	n = rules_load_stream(r, f, path, err, errlen);
	fclose(f);
	return n;
}

long rules_load_stream(struct rules *r, FILE *f, const char *path, char *err, size_t errlen)
{
	char line[1024], why[300];
	uint32_t lineno = 0;
	long count = 0;
	int src;

	if ((src = rules_source(r, path)) < 0) {
		snprintf(err, errlen, "%s: out of memory", path);
		return -1;
	}
	while (fgets(line, sizeof(line), f)) {
		char *verb, *name, *extra, *save = NULL;
		lineno++;
		if (!strchr(line, '\n') && !feof(f)) {
			snprintf(err, errlen, "%s:%u: line is longer than %zu bytes", path, lineno,
				 sizeof(line) - 2);
			return -1;
		}
		int dir = directive(r, src, line, path, lineno, err, errlen);
		if (dir < 0)
			return -1;
		if (dir > 0)
			continue;
		char *hash = strchr(line, '#');
		if (hash)
			*hash = '\0';
		if (!(verb = strtok_r(line, " \t\r\n", &save)))
			continue;
		name = strtok_r(NULL, " \t\r\n", &save);
		extra = strtok_r(NULL, " \t\r\n", &save);
		bool allow = strcmp(verb, "allow") == 0;
		if (!allow && strcmp(verb, "deny") != 0) {
			snprintf(err, errlen, "%s:%u: '%s' is not a rule; expected 'allow NAME' or 'deny NAME'",
				 path, lineno, verb);
			return -1;
		}
		if (!name || extra) {
			snprintf(err, errlen, "%s:%u: '%s' takes exactly one name", path, lineno, verb);
			return -1;
		}
		struct rule_origin o = { (uint16_t)src, lineno };
		if (rules_add(r, allow, name, o, why, sizeof(why)) < 0) {
			snprintf(err, errlen, "%s:%u: %s", path, lineno, why);
			return -1;
		}
		count++;
	}
	if (ferror(f)) {
		snprintf(err, errlen, "%s: read error", path);
		return -1;
	}
	return count;
}

size_t rules_count(const struct rules *r)
{
	return r->n_rules;
}

size_t rules_memory(const struct rules *r)
{
	return sizeof(*r) + (r->mask + 1) * sizeof(*r->slots) +
	       r->cap_nodes * sizeof(*r->nodes) + r->arena_cap;
}
