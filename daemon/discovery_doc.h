/**
 * \file discovery_doc.h
 * Parsing and checking a registry's discovery document: `az acr
 * show-endpoints` output, an ARM registry resource, or the state file
 * discovery saves (the first shape).  The result is the registry's data
 * (and regional) endpoints, or a status and a reason naming what is wrong.
 * The status and list type keep discovery's names: they are what the
 * discovery tasks and the state files deal in.
 */
#ifndef ACRDNS_DISCOVERY_DOC_H
#define ACRDNS_DISCOVERY_DOC_H

#include <stddef.h>

/** The largest document read; a registry document is a few KiB. */
#define DISCOVERY_DOC_MAX (1024 * 1024)

/** What a document said, once checked. */
enum discovery_status {
	DISCOVERY_OK,
	DISCOVERY_BAD,          /**< not JSON, not either shape, wrong types */
	DISCOVERY_WRONG_LOGIN,  /**< another registry's document */
	DISCOVERY_FOREIGN,      /**< names an endpoint that is not the registry's own */
	DISCOVERY_NO_DEDICATED, /**< the registry has no dedicated data endpoints */
};

/**
 * Parse a document in `az acr show-endpoints` form or an ARM registry
 * resource, and check every name against the registry's own forms.
 * @param endpoints receives a NULL-terminated malloc'd list (lowercase,
 *        sorted, no duplicates) when DISCOVERY_OK
 * @param why receives the reason otherwise, naming the offending name
 */
enum discovery_status discovery_doc_parse(const char *doc, size_t len, const char *login_server,
					  char ***endpoints, char *why, size_t whylen);

/** Free a list from discovery_doc_parse or discovery_state_load; NULL is allowed. */
void discovery_list_free(char **list);

#endif
