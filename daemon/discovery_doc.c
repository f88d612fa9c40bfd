/**
 * \file discovery_doc.c
 * A registry's discovery document → its data endpoints.  Pure: no file,
 * no socket, no loop, so the Check tests and fuzz_discovery drive it with
 * any bytes.  Every name must be in the registry's own form (regname.c);
 * one that is not fails the whole document, so a tampered source cannot
 * open the filter.
 */
#include "autoconf.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "discovery_doc.h"
#include "regname.h"

void discovery_list_free(char **list)
{
	if (!list)
		return;
	for (char **p = list; *p; p++)
		free(*p);
	free(list);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/** Lowercase, without a trailing dot: how endpoints are compared and shown. */
static char *normal_name(const char *s)
{
	size_t n = strlen(s);
	char *c;

	if (n && s[n - 1] == '.')
		n--;
	if (!(c = malloc(n + 1)))
		return NULL;
	for (size_t i = 0; i < n; i++)
		c[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] + 32) : s[i];
	c[n] = '\0';
	return c;
}

static bool is_blob_storage(const char *name)
{
	static const char *const suffixes[] = { ".blob.core.windows.net", ".blob.core.chinacloudapi.cn",
						".blob.core.usgovcloudapi.net", NULL };
	size_t n = strlen(name);

	if (n && name[n - 1] == '.')
		n--;
	for (const char *const *s = suffixes; *s; s++) {
		size_t k = strlen(*s);
		if (n >= k && strncasecmp(name + n - k, *s, k) == 0)
			return true;
	}
	return false;
}

/** Collect endpoint names from an array of strings or of { "endpoint": ... } objects. */
static enum discovery_status collect(json_t *arr, const char *what, char ***names, size_t *n,
				     char *why, size_t whylen)
{
	size_t i;
	json_t *v;

	if (!json_is_array(arr)) {
		snprintf(why, whylen, "'%s' is not an array", what);
		return DISCOVERY_BAD;
	}
	json_array_foreach(arr, i, v) {
		json_t *e = json_is_object(v) ? json_object_get(v, "endpoint") : v;
		if (!json_is_string(e)) {
			snprintf(why, whylen, "'%s'[%zu] has no endpoint name", what, i);
			return DISCOVERY_BAD;
		}
		char **grown = realloc(*names, (*n + 2) * sizeof(*grown));
		if (!grown) {
			snprintf(why, whylen, "out of memory");
			return DISCOVERY_BAD;
		}
		*names = grown;
		grown[*n] = strdup(json_string_value(e));
		grown[*n + 1] = NULL;
		if (!grown[*n]) {
			snprintf(why, whylen, "out of memory");
			return DISCOVERY_BAD;
		}
		(*n)++;
	}
	return DISCOVERY_OK;
}

/** The parts of a document that count, in either of its shapes. */
struct doc_fields {
	json_t *login, *data, *regional;
	bool arm;   /* an ARM registry resource, not `az acr show-endpoints` output */
};

/**
 * Read a document as JSON: bounded in size, one object, no duplicate keys.
 * @param root receives the object when DISCOVERY_OK (the caller decrefs it)
 */
static enum discovery_status doc_load(const char *doc, size_t len, json_t **root, char *why,
				      size_t whylen)
{
	json_error_t jerr;

	if (len > DISCOVERY_DOC_MAX) {
		snprintf(why, whylen, "document is larger than %d bytes", DISCOVERY_DOC_MAX);
		return DISCOVERY_BAD;
	}
	/* jansson checks UTF-8 and nesting depth; a NUL inside is an error. */
	*root = json_loadb(doc, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!*root) {
		snprintf(why, whylen, "not JSON: line %d: %s", jerr.line, jerr.text);
		return DISCOVERY_BAD;
	}
	if (!json_is_object(*root)) {
		snprintf(why, whylen, "document is not a JSON object");
		json_decref(*root);
		*root = NULL;
		return DISCOVERY_BAD;
	}
	return DISCOVERY_OK;
}

/** Find the login server and the endpoint arrays, in whichever shape root has. */
static void doc_fields(json_t *root, struct doc_fields *f)
{
	json_t *props = json_object_get(root, "properties");

	f->arm = json_is_object(props);
	if (f->arm) {
		/* An ARM registry resource.  Only the host-name arrays count: the
		 * flags beside them were renamed between previews
		 * (regionalEndpointEnabled, then regionalEndpoints: "Enabled"), and
		 * a name listed is a name served. */
		f->login = json_object_get(props, "loginServer");
		f->data = json_object_get(props, "dataEndpointHostNames");
		f->regional = json_object_get(props, "regionalEndpointHostNames");
		if (json_is_null(f->data))
			f->data = NULL;
	} else {
		f->login = json_object_get(root, "loginServer");
		f->data = json_object_get(root, "dataEndpoints");
		f->regional = json_object_get(root, "regionalEndpoints");
	}
}

/** @return DISCOVERY_OK when the document is the registry's own */
static enum discovery_status check_login(const struct doc_fields *f, const char *login_server,
					 char *why, size_t whylen)
{
	if (!json_is_string(f->login)) {
		snprintf(why, whylen, "no 'loginServer' string");
		return DISCOVERY_BAD;
	}
	if (strcasecmp(json_string_value(f->login), login_server) != 0) {
		snprintf(why, whylen, "document is for '%s', not '%s'", json_string_value(f->login),
			 login_server);
		return DISCOVERY_WRONG_LOGIN;
	}
	return DISCOVERY_OK;
}

/** Collect the names of both arrays, data endpoints then regional ones, as written. */
static enum discovery_status collect_all(const struct doc_fields *f, char ***names, size_t *n,
					 char *why, size_t whylen)
{
	enum discovery_status st = DISCOVERY_OK;

	if (f->data && (st = collect(f->data, f->arm ? "dataEndpointHostNames" : "dataEndpoints", names,
				     n, why, whylen)) != DISCOVERY_OK)
		return st;
	if (f->regional && !json_is_null(f->regional))
		st = collect(f->regional, f->arm ? "regionalEndpointHostNames" : "regionalEndpoints",
			     names, n, why, whylen);
	return st;
}

/**
 * Check every name against the registry's own forms and normalise it in
 * place; a registry without dedicated data endpoints is refused, with how
 * to enable them.
 */
static enum discovery_status check_names(char **names, size_t n, const char *login_server,
					 char *why, size_t whylen)
{
	for (size_t i = 0; i < n; i++) {
		if (is_blob_storage(names[i]) || strchr(names[i], '*')) {
			snprintf(why, whylen, "registry %s has no dedicated data endpoints (its layers come "
				 "from %s), so pulls through acrdns will fail; enable them with "
				 "'az acr update --name NAME --data-endpoint-enabled'", login_server, names[i]);
			return DISCOVERY_NO_DEDICATED;
		}
		char reason[300];
		if (regname_check_endpoint(login_server, names[i], reason, sizeof(reason)) < 0) {
			snprintf(why, whylen, "%s", reason);
			return DISCOVERY_FOREIGN;
		}
		char *c = normal_name(names[i]);
		if (!c) {
			snprintf(why, whylen, "out of memory");
			return DISCOVERY_BAD;
		}
		free(names[i]);
		names[i] = c;
	}
	if (n == 0) {
		snprintf(why, whylen, "registry %s lists no dedicated data endpoints, so pulls through "
			 "acrdns will fail; enable them with 'az acr update --name NAME "
			 "--data-endpoint-enabled'", login_server);
		return DISCOVERY_NO_DEDICATED;
	}
	return DISCOVERY_OK;
}

/** Sort the n names and drop duplicates; the list stays NULL-terminated. */
static void sort_unique(char **names, size_t n)
{
	qsort(names, n, sizeof(*names), cmp_str);
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (k && strcmp(names[k - 1], names[i]) == 0)
			free(names[i]);
		else
			names[k++] = names[i];
	}
	names[k] = NULL;
}

enum discovery_status discovery_doc_parse(const char *doc, size_t len, const char *login_server,
					  char ***endpoints, char *why, size_t whylen)
{
	json_t *root;
	struct doc_fields f;
	char **names = NULL;
	size_t n = 0;
	enum discovery_status st;

	*endpoints = NULL;
	if ((st = doc_load(doc, len, &root, why, whylen)) != DISCOVERY_OK)
		return st;
	doc_fields(root, &f);
	if ((st = check_login(&f, login_server, why, whylen)) == DISCOVERY_OK &&
	    (st = collect_all(&f, &names, &n, why, whylen)) == DISCOVERY_OK &&
	    (st = check_names(names, n, login_server, why, whylen)) == DISCOVERY_OK) {
		sort_unique(names, n);
		*endpoints = names;
		names = NULL;
	}
	discovery_list_free(names);
	json_decref(root);
	return st;
}
