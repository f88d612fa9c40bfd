/**
 * \file regname.h
 * Checks of a container registry's names in their text form: the login
 * server and the data endpoints that belong to it.
 */
#ifndef ACRDNS_REGNAME_H
#define ACRDNS_REGNAME_H

#include <stdbool.h>
#include <stddef.h>

/**
 * Check that a login server has the form <registry>.azurecr.{io,cn,us}, or
 * Amazon ECR's <12 digits>.dkr.ecr.<region>.amazonaws.com or
 * <12 digits>.dkr-ecr.<region>.on.aws.
 * @return 0, or -1 with the reason in why
 */
int regname_check_login_server(const char *login, char *why, size_t whylen);

/**
 * Is login an Amazon ECR login server?  Such a registry allows itself,
 * api.ecr.<region>.amazonaws.com and exactly the AWS-owned layer bucket
 * prod-<region>-starport-layer-bucket.s3.<region>.amazonaws.com; it has no
 * data endpoints to configure or discover.
 * @param region receives the region (us-east-1) when true
 */
bool regname_ecr_region(const char *login, char *region, size_t len);

/**
 * Check that an endpoint belongs to the registry: <registry>.<region>.data.<suffix>
 * or <registry>.<region>.geo.<suffix>, with the login server's registry and suffix.
 * @return 0, or -1 with the reason in why
 */
int regname_check_endpoint(const char *login, const char *endpoint, char *why, size_t whylen);

#endif
