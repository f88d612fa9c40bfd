/**
 * \file regname.h
 * Checks of a container registry's names in their text form: the login
 * server and the data endpoints that belong to it.
 */
#ifndef ACRDNS_REGNAME_H
#define ACRDNS_REGNAME_H

#include <stddef.h>

/**
 * Check that a login server has the form <registry>.azurecr.{io,cn,us}.
 * @return 0, or -1 with the reason in why
 */
int regname_check_login_server(const char *login, char *why, size_t whylen);

/**
 * Check that an endpoint belongs to the registry: <registry>.<region>.data.<suffix>
 * or <registry>.<region>.geo.<suffix>, with the login server's registry and suffix.
 * @return 0, or -1 with the reason in why
 */
int regname_check_endpoint(const char *login, const char *endpoint, char *why, size_t whylen);

#endif
