/**
 * \file regname.c
 * The names of an Azure container registry: its login server and its
 * data endpoints.  A leaf that configuration, policy and discovery all
 * check names with, so that none of them includes another for it.
 */
#include "autoconf.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "regname.h"
#include "wire.h"

static bool label_is_alnum(const uint8_t *label)
{
	if (label[0] == 0 || label[0] > 63)
		return false;
	for (int i = 1; i <= label[0]; i++) {
		uint8_t c = label[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
			return false;
	}
	return true;
}

static bool label_is(const uint8_t *label, const char *s)
{
	return label[0] == strlen(s) && memcmp(label + 1, s, label[0]) == 0;
}

/** Split a wire name into at most max label pointers. @return label count */
static int split_labels(const uint8_t *name, const uint8_t **labels, int max)
{
	int n = 0;

	for (const uint8_t *p = name; *p; p += *p + 1) {
		if (n == max)
			return max + 1;
		labels[n++] = p;
	}
	return n;
}

static bool acr_suffix(const uint8_t *azurecr, const uint8_t *tld)
{
	return label_is(azurecr, "azurecr") &&
	       (label_is(tld, "io") || label_is(tld, "cn") || label_is(tld, "us"));
}

int regname_check_login_server(const char *login, char *why, size_t whylen)
{
	uint8_t name[WIRE_NAME_MAX + 1];
	const uint8_t *l[4];

	if (wire_name_from_str(login, name) < 0 || split_labels(name, l, 3) != 3 ||
	    !label_is_alnum(l[0]) || !acr_suffix(l[1], l[2])) {
		snprintf(why, whylen, "login server '%s' is not of the form "
			 "<registry>.azurecr.io (or .azurecr.cn, .azurecr.us)", login);
		return -1;
	}
	return 0;
}

int regname_check_endpoint(const char *login, const char *endpoint, char *why, size_t whylen)
{
	uint8_t ln[WIRE_NAME_MAX + 1], en[WIRE_NAME_MAX + 1];
	const uint8_t *l[4], *e[6];

	if (wire_name_from_str(login, ln) < 0 || split_labels(ln, l, 3) != 3 ||
	    wire_name_from_str(endpoint, en) < 0 || split_labels(en, e, 5) != 5 ||
	    memcmp(e[0], l[0], (size_t)l[0][0] + 1) != 0 || !label_is_alnum(e[1]) ||
	    !(label_is(e[2], "data") || label_is(e[2], "geo")) ||
	    memcmp(e[3], l[1], (size_t)l[1][0] + 1) != 0 ||
	    memcmp(e[4], l[2], (size_t)l[2][0] + 1) != 0) {
		snprintf(why, whylen, "endpoint '%s' is not one of registry '%s': expected "
			 "<registry>.<region>.data.<suffix> or <registry>.<region>.geo.<suffix>",
			 endpoint, login);
		return -1;
	}
	return 0;
}
