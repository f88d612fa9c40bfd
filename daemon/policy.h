/**
 * \file policy.h
 * The decision acrdns exists for: given a normalised query name and type,
 * answer it locally, deny it, or let it go to the cache and upstream.
 *
 * A policy is two tables: the rule table (rule files, inline rules, local
 * names), which can hold millions of names and is built whole from a
 * configuration and never changed after; and over it the registries' names
 * (login servers, data and regional endpoints), a small table of exact
 * allow rules.  A reload builds a new policy and swaps the pointer; a
 * discovery change builds only new registries' names, in time proportional
 * to the endpoints, and swaps them in (policy_names_swap).  The layering
 * decides exactly as one merged table would (see policy_decide).
 * No sockets here, so the decision is unit-tested and fuzzed on its own.
 */
#ifndef ACRDNS_POLICY_H
#define ACRDNS_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "rules.h"

enum verdict {
	VERDICT_ALLOW,   /**< allowed by an explicit rule: its answer's chain trusted whole */
	VERDICT_PASS,    /**< forwarded by filter mode's default: CNAME targets checked */
	VERDICT_DENY,
	VERDICT_LOCAL,   /**< answered from the configuration */
	VERDICT_AUDIT,   /**< audit mode: would be denied; forwarded, answered whole and counted */
	VERDICT_COUNT,
};

struct policy_decision {
	enum verdict verdict;
	int kind;                       /**< enum rule_kind that decided, -1 for the default */
	const struct rule_node *node;   /**< the rule's name, NULL for the default */
	int32_t local;                  /**< local entry index for VERDICT_LOCAL; -1: built in */
};

/** One registry's names, as the policy allows them. */
struct policy_registry {
	char *login_server;
	char **endpoints;
	size_t n_endpoints;
};

/**
 * The registries' names, built apart from the rules: a table of exact
 * allow rules (sources "registry X" and "discovery X") and the lists
 * behind it.  Its members are those of struct policy of the same names.
 */
struct policy_names {
	struct rules *table;
	struct policy_registry *registries;
	size_t n_registries;
	size_t n_added;                 /**< names the rule table does not allow exactly already */
};

struct policy {
	enum cfg_mode mode;
	bool audit;                     /**< audit = true: VERDICT_AUDIT where the rules deny */
	const char *config_path;        /**< borrowed from the configuration */
	struct rules *rules;            /**< rule files, inline rules, local names */
	const struct cfg_local *local;  /**< borrowed from the configuration */
	size_t n_local;
	/* The registries' names, replaced together by policy_names_swap(). */
	struct rules *names;
	struct policy_registry *registries;
	size_t n_registries;
	size_t n_names_added;
	size_t *file_counts;            /**< rules read per file, in source order */
	char **files;
	size_t n_files;
};

/**
 * Build a policy from a configuration: rule files, inline allow/deny,
 * registries and local names.  Pure (files are read, nothing else is
 * touched), so a reload runs it in a thread.
 * @param extra_endpoints per registry, discovered endpoints to allow as
 *        well (NULL-terminated string lists; NULL for none)
 * @param err receives "file:line: message"
 * @return the policy, or NULL with err set
 */
struct policy *policy_new(const struct config *cfg, char **const *extra_endpoints,
			  char *err, size_t errlen);
void policy_free(struct policy *p);

/**
 * Build the registries' names of cfg (login servers, configured data
 * endpoints) and extra_endpoints (as for policy_new), for p's rule table.
 * Costs time in proportion to the registries' names, whatever p's rules.
 * @return the names, or NULL with err set (out of memory)
 */
struct policy_names *policy_names_new(const struct policy *p, const struct config *cfg,
				      char **const *extra_endpoints, char *err, size_t errlen);

/**
 * Put names in p in O(1); names receives what p held.  No thread may be
 * deciding with p meanwhile (the daemon stops its workers around it), and
 * what names then holds is freed once none can still point into it.
 */
void policy_names_swap(struct policy *p, struct policy_names *names);

/** Free names from policy_names_new or policy_names_swap; NULL is allowed. */
void policy_names_free(struct policy_names *names);

/**
 * @return the rules p holds, as one table would count them: the rule
 * table's plus the registries' names it does not hold already.
 */
size_t policy_rule_count(const struct policy *p);

/**
 * Decide for a lowercase wire name.  resolver.arpa and the names below it
 * are answered locally whatever the rules say: discovery of designated
 * resolvers (RFC 9462) would point clients at an encrypted resolver that
 * goes around this one, so the name is never forwarded and has no data.
 * Then a local name; an exact deny; an exact allow (a rule's first, then
 * a registry's name); the longest wildcard, deny on a tie; the mode.
 * In audit mode a name the rules deny gets VERDICT_AUDIT, with the deny
 * rule in kind and node; local names keep VERDICT_LOCAL.
 */
void policy_decide(const struct policy *p, const uint8_t *name, size_t len,
		   struct policy_decision *d);

/** @return the local answer behind a VERDICT_LOCAL decision. */
const struct cfg_local *policy_local(const struct policy *p, const struct policy_decision *d);

/**
 * Describe the rule behind a decision, e.g.
 * "deny *.blob.core.windows.net (rules/azure-storage.rules:4)".
 */
void policy_describe(const struct policy *p, const struct policy_decision *d,
		     char *buf, size_t len);

/** @return "allow", "pass", "deny", "local" or "audit". */
const char *policy_verdict_name(enum verdict v);

/**
 * Call fn with a warning for each rule file that marks itself as allowing a
 * shared registry ("# acrdns: shared-registry NAME"): pushes to any account
 * there pass DNS too.
 */
void policy_each_shared(const struct policy *p, void (*fn)(void *arg, const char *warning),
			void *arg);

#endif
