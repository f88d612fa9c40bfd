/**
 * \file rules.h
 * A table of allow/deny rules keyed by lowercase wire name.  Each name
 * carries up to four rules (exact allow, exact deny, wildcard allow,
 * wildcard deny) and, for policy's use, a local-answer index.  Lookups
 * hash one name; the policy walks a query's suffixes, so a decision costs
 * one lookup per label whatever the number of rules.
 */
#ifndef ACRDNS_RULES_H
#define ACRDNS_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum rule_kind {
	RULE_EXACT_ALLOW = 0,
	RULE_EXACT_DENY = 1,
	RULE_WILD_ALLOW = 2,
	RULE_WILD_DENY = 3,
	RULE_KINDS = 4,
};

/** Where a rule was written: an index into the table's sources, and a line. */
struct rule_origin {
	uint16_t source;
	uint32_t line;
};

/** One name in the table. */
struct rule_node {
	uint32_t name_off;     /**< into the table's name arena */
	uint32_t hash;
	uint8_t name_len;      /**< wire length, 1 to 255 */
	uint8_t kinds;         /**< bit (1 << enum rule_kind) per rule present */
	int32_t local;         /**< index of a local answer, or -1 */
	struct rule_origin origin[RULE_KINDS];
};

struct rules;

/** @return an empty table, or NULL when out of memory. */
struct rules *rules_new(void);
void rules_free(struct rules *r);

/**
 * Intern the name of a rule source (a file, "config", "registry X").
 * @return its index, or -1 when out of memory or past 65535 sources
 */
int rules_source(struct rules *r, const char *name);

/** @return the text of source index i. */
const char *rules_source_name(const struct rules *r, uint16_t i);

/** @return the number of sources interned. */
size_t rules_sources(const struct rules *r);

/**
 * @return the registry that source i says it opens to every account on it
 * ("# acrdns: shared-registry NAME" in a rule file), or NULL
 */
const char *rules_source_shared(const struct rules *r, uint16_t i);

/**
 * Add a rule from its text: "name" (exact) or "*.name" (strictly below).
 * @param why receives the reason on failure
 * @return 0, or -1 when the text is not a name or memory ran out
 */
int rules_add(struct rules *r, bool allow, const char *text, struct rule_origin origin,
	      char *why, size_t whylen);

/** Add an exact or wildcard rule for a lowercase wire name. @return 0 or -1 */
int rules_add_wire(struct rules *r, enum rule_kind kind, const uint8_t *name, size_t len,
		   struct rule_origin origin);

/** Mark name as answered locally with index idx. @return 0 or -1 */
int rules_set_local(struct rules *r, const uint8_t *name, size_t len, int32_t idx);

/**
 * Read a rule file: one "allow NAME" or "deny NAME" per line, '#' comments.
 * A comment "# acrdns: shared-registry NAME" marks the file as allowing a
 * registry shared by many accounts (Docker Hub, GHCR, Quay), which DNS
 * cannot tell apart: see rules_source_shared().  Any other "# acrdns:"
 * comment is an error.
 * @param err receives "file:line: message"
 * @return number of rules read, or -1
 */
long rules_load_file(struct rules *r, const char *path, char *err, size_t errlen);

/**
 * Read rules from an open stream; name is used in messages and as the source.
 * @return number of rules read, or -1 with err set
 */
long rules_load_stream(struct rules *r, FILE *f, const char *name, char *err, size_t errlen);

/** @return the node for exactly this lowercase wire name, or NULL. */
const struct rule_node *rules_find(const struct rules *r, const uint8_t *name, size_t len);

/**
 * The hash every table keys a name by, so that one name looked up in two
 * tables (the policy's rules and its registries' names) is hashed once.
 */
uint32_t rules_hash(const uint8_t *name, size_t len);

/** rules_find() with h = rules_hash(name, len) computed by the caller. */
const struct rule_node *rules_find_hashed(const struct rules *r, const uint8_t *name, size_t len,
					  uint32_t h);

/** @return true when n is one of r's nodes (a decision names its table this way). */
bool rules_holds(const struct rules *r, const struct rule_node *n);

/** @return the wire name of a node. */
const uint8_t *rules_node_name(const struct rules *r, const struct rule_node *n);

/** @return number of rules held (a name with two rules counts two). */
size_t rules_count(const struct rules *r);

/** @return bytes held by the table, for the -t summary and benchmarks. */
size_t rules_memory(const struct rules *r);

#endif
