/**
 * \file hash.h
 * Keyed hash (SipHash-1-3) for tables whose keys come from the network,
 * so that a client cannot choose names that all land in one bucket.
 */
#ifndef ACRDNS_HASH_H
#define ACRDNS_HASH_H

#include <stddef.h>
#include <stdint.h>

/** Seed the key from the kernel's random pool; call once at start-up. */
void hash_init(void);

/** @return the keyed 64-bit hash of len bytes at data. */
uint64_t hash_bytes(const void *data, size_t len);

#endif
