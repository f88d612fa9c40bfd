/**
 * \file printconf.h
 * Printing the parsed configuration for `acrdnsd -t` (as OpenBSD unwind's
 * printconf.c does for `unwind -n`), and the server lists `--explain` shows.
 */
#ifndef ACRDNS_PRINTCONF_H
#define ACRDNS_PRINTCONF_H

#include <stddef.h>

#include "config.h"
#include "policy.h"

/** Print on stdout what the configuration and its policy will run. */
void printconf_summary(const struct config *cfg, const struct policy *p);

/**
 * Print one server list on stdout, without a newline:
 * "10.1.0.4#53, file:/etc/resolv.conf (2 nameservers now)".
 */
void printconf_upstreams(const struct cfg_upstream *list, size_t n);

#endif
