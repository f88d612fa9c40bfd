/**
 * \file address.h
 * Socket addresses and CIDR networks as the daemon uses them at run time:
 * parsed from text ("addr:port", "[v6]:port", "addr/prefix"), compared,
 * matched against a network and printed.  A leaf: no other module of
 * ours below it, so config, listeners, upstreams and control can all use it.
 */
#ifndef ACRDNS_ADDRESS_H
#define ACRDNS_ADDRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* The types keep the names the configuration gave them (struct config
 * holds lists of both); only the functions moved here. */
struct cfg_addr {
	struct sockaddr_storage ss;
	socklen_t len;
};

/** A network in CIDR form; addr holds 4 or 16 bytes. */
struct cfg_net {
	int family;
	uint8_t addr[16];
	int prefix;
};

/**
 * Parse "addr", "addr:port", "[v6]" or "[v6]:port".
 * @return 0, or -1 when it is not an address
 */
int address_parse(const char *text, uint16_t default_port, struct cfg_addr *out);

/** Parse "addr/prefix" or "addr". @return 0 or -1 */
int address_parse_net(const char *text, struct cfg_net *out);

/** @return true when addr lies in net (IPv4-mapped IPv6 counts as IPv4). */
bool address_net_contains(const struct cfg_net *net, const struct sockaddr *addr);

/** @return true when two addresses have the same family, address and port. */
bool address_equal(const struct cfg_addr *a, const struct cfg_addr *b);

/** Format an address as "1.2.3.4#53" or "::1#53" into buf (64 bytes). */
void address_str(const struct sockaddr *addr, char *buf, size_t len);

#endif
