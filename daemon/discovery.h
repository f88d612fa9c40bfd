/**
 * \file discovery.h
 * Keeping each registry's data endpoints current.  Per registry, a task on
 * the event loop reads a source (a file, a command, or ARM over HTTPS),
 * validates what it says, and when the set changes, persists it, has the
 * registries' names rebuilt (not the rules: see policy.h), drops the
 * removed names from the cache and resolves the new ones ahead of the
 * first pull.  A failed or invalid refresh keeps the
 * last good set, so a broken or tampered source never opens the filter.
 */
#ifndef ACRDNS_DISCOVERY_H
#define ACRDNS_DISCOVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "config.h"
#include "discovery_doc.h"

struct server;
struct discovery;

/**
 * Write a registry's endpoints to state_dir atomically (temporary file,
 * fsync, rename).  @return 0, or -1 with why set
 */
int discovery_state_save(const char *state_dir, const char *login_server, char *const *endpoints,
			 char *why, size_t whylen);

/**
 * Read what discovery_state_save wrote, checked as any other document
 * (discovery_doc_parse).
 * @return the list, or NULL when there is none or it is not valid
 */
char **discovery_state_load(const char *state_dir, const char *login_server);

/** Called after a registry's endpoint set changed, to swap in new registries' names. */
typedef void (*discovery_changed_fn)(struct server *s);

/** @return the discovery state, or NULL when out of memory. */
struct discovery *discovery_new(struct server *s, discovery_changed_fn changed);
void discovery_free(struct discovery *d);

/**
 * Discovered endpoints for each registry of cfg, in its order, for
 * policy_new(): what this process discovered, else what state_dir holds.
 * The lists stay owned by d and live until the next discovery_configure.
 */
char **const *discovery_endpoints(struct discovery *d, const struct config *cfg);

/** Start (or restart, after a reload) one task per registry of cfg. */
void discovery_configure(struct discovery *d, const struct config *cfg);

/** One discovered registry's state, for reports. */
struct discovery_info {
	const char *login;
	const char *source;       /**< "file", "command" or "arm" */
	time_t last_success;      /**< 0: never in this process */
	const char *last_error;   /**< "" after a success */
	double next_refresh;      /**< seconds from now */
	char *const *endpoints;   /**< NULL-terminated, or NULL */
	uint64_t successes;       /**< good documents since start */
	uint64_t failures;        /**< failed runs since start */
	time_t saved;             /**< when the set loaded from state_dir at start was saved; 0: none */
};

/** Call fn for each registry with a discovery task, in configuration order. */
void discovery_each(struct discovery *d, void (*fn)(void *arg, const struct discovery_info *info),
		    void *arg);

#endif
