/**
 * \file address.c
 * Socket addresses and CIDR networks: parse, compare, match, print.  Kept
 * apart from config.c, which reads the file, because listeners, upstreams,
 * resolv.conf watching, access checks and logs use them at run time.
 */
#include "autoconf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "address.h"

int address_parse(const char *text, uint16_t default_port, struct cfg_addr *out)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *port = NULL;
	size_t hl;
	unsigned long p = default_port;

	memset(out, 0, sizeof(*out));
	if (text[0] == '[') {
		const char *close = strchr(text, ']');
		if (!close)
			return -1;
		hl = (size_t)(close - text - 1);
		if (hl >= sizeof(host))
			return -1;
		memcpy(host, text + 1, hl);
		host[hl] = '\0';
		if (close[1] == ':')
			port = close + 2;
		else if (close[1] != '\0')
			return -1;
	} else {
		const char *colon = strchr(text, ':');
		if (colon && strchr(colon + 1, ':'))
			colon = NULL; /* bare IPv6 address, no port */
		hl = colon ? (size_t)(colon - text) : strlen(text);
		if (hl >= sizeof(host))
			return -1;
		memcpy(host, text, hl);
		host[hl] = '\0';
		if (colon)
			port = colon + 1;
	}
	if (port) {
		char *end;
		errno = 0;
		p = strtoul(port, &end, 10);
		if (*port == '\0' || *end != '\0' || errno || p == 0 || p > 65535)
			return -1;
	}
	struct sockaddr_in *s4 = (struct sockaddr_in *)&out->ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&out->ss;
	if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)p);
		out->len = sizeof(*s4);
	} else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)p);
		out->len = sizeof(*s6);
	} else {
		return -1;
	}
	return 0;
}

int address_parse_net(const char *text, struct cfg_net *out)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *slash = strchr(text, '/');
	size_t hl = slash ? (size_t)(slash - text) : strlen(text);
	long prefix = -1;

	if (hl >= sizeof(host))
		return -1;
	memcpy(host, text, hl);
	host[hl] = '\0';
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, host, out->addr) == 1)
		out->family = AF_INET;
	else if (inet_pton(AF_INET6, host, out->addr) == 1)
		out->family = AF_INET6;
	else
		return -1;
	int max = out->family == AF_INET ? 32 : 128;
	if (slash) {
		char *end;
		errno = 0;
		prefix = strtol(slash + 1, &end, 10);
		if (slash[1] == '\0' || *end != '\0' || errno || prefix < 0 || prefix > max)
			return -1;
	}
	out->prefix = prefix < 0 ? max : (int)prefix;
	return 0;
}

bool address_net_contains(const struct cfg_net *net, const struct sockaddr *addr)
{
	const uint8_t *a;
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	if (addr->sa_family == AF_INET) {
		if (net->family != AF_INET)
			return false;
		a = (const uint8_t *)&((const struct sockaddr_in *)addr)->sin_addr;
	} else if (addr->sa_family == AF_INET6) {
		a = (const uint8_t *)&((const struct sockaddr_in6 *)addr)->sin6_addr;
		if (net->family == AF_INET) {
			if (memcmp(a, mapped, 12) != 0)
				return false;
			a += 12;
		}
	} else {
		return false;
	}
	int bits = net->prefix;
	for (int i = 0; bits > 0; i++, bits -= 8) {
		uint8_t mask = bits >= 8 ? 0xff : (uint8_t)(0xff << (8 - bits));
		if ((a[i] & mask) != (net->addr[i] & mask))
			return false;
	}
	return true;
}

bool address_equal(const struct cfg_addr *a, const struct cfg_addr *b)
{
	if (a->ss.ss_family != b->ss.ss_family)
		return false;
	if (a->ss.ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)&a->ss, *y = (const void *)&b->ss;
		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	const struct sockaddr_in6 *x = (const void *)&a->ss, *y = (const void *)&b->ss;
	return x->sin6_port == y->sin6_port &&
	       memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
}

void address_str(const struct sockaddr *addr, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (addr->sa_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)addr;
		inet_ntop(AF_INET, &s->sin_addr, host, sizeof(host));
		port = ntohs(s->sin_port);
	} else if (addr->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)addr;
		inet_ntop(AF_INET6, &s->sin6_addr, host, sizeof(host));
		port = ntohs(s->sin6_port);
	}
	snprintf(buf, len, "%s#%u", host, port);
}
