/**
 * \file regname.c
 * The names of a container registry: an Azure registry's login server
 * and data endpoints, and the login server of an Amazon ECR registry.  A leaf that configuration, policy and discovery all
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

static bool label_is_digits(const uint8_t *label, int n)
{
	if (label[0] != n)
		return false;
	for (int i = 1; i <= n; i++)
		if (label[i] < '0' || label[i] > '9')
			return false;
	return true;
}

/** An AWS region name: letters, then -word groups, ending in -digits (us-gov-west-1). */
static bool label_is_aws_region(const uint8_t *label)
{
	int n = label[0], dashes = 0;

	if (n < 4 || label[1] < 'a' || label[1] > 'z' || label[n] < '0' || label[n] > '9')
		return false;
	for (int i = 1; i <= n; i++) {
		uint8_t c = label[i];
		if (c == '-') {
			if (label[i - 1] == '-' || i == 1)
				return false;
			dashes++;
		} else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) {
			return false;
		}
	}
	return dashes >= 2;
}

bool regname_ecr_region(const char *login, char *region, size_t len)
{
	uint8_t name[WIRE_NAME_MAX + 1];
	const uint8_t *l[7], *r;
	int n;

	if (wire_name_from_str(login, name) < 0)
		return false;
	n = split_labels(name, l, 6);
	/* <account>.dkr.ecr.<region>.amazonaws.com, or dual-stack <account>.dkr-ecr.<region>.on.aws */
	if (n == 6 && label_is_digits(l[0], 12) && label_is(l[1], "dkr") && label_is(l[2], "ecr") &&
	    label_is(l[4], "amazonaws") && label_is(l[5], "com"))
		r = l[3];
	else if (n == 5 && label_is_digits(l[0], 12) && label_is(l[1], "dkr-ecr") &&
		 label_is(l[3], "on") && label_is(l[4], "aws"))
		r = l[2];
	else
		return false;
	if (!label_is_aws_region(r) || (size_t)r[0] >= len)
		return false;
	memcpy(region, r + 1, r[0]);
	region[r[0]] = '\0';
	return true;
}

int regname_check_login_server(const char *login, char *why, size_t whylen)
{
	uint8_t name[WIRE_NAME_MAX + 1];
	const uint8_t *l[4];
	char region[64];

	if (regname_ecr_region(login, region, sizeof(region)))
		return 0;
	if (wire_name_from_str(login, name) < 0 || split_labels(name, l, 3) != 3 ||
	    !label_is_alnum(l[0]) || !acr_suffix(l[1], l[2])) {
		snprintf(why, whylen, "login server '%s' is not of the form "
			 "<registry>.azurecr.io (or .azurecr.cn, .azurecr.us), nor Amazon ECR's "
			 "<12-digit account>.dkr.ecr.<region>.amazonaws.com or "
			 "<12-digit account>.dkr-ecr.<region>.on.aws", login);
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
