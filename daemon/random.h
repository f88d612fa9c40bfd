/**
 * \file random.h
 * Unpredictable numbers for query IDs and source ports (RFC 5452).  Drawn
 * from the kernel's CSPRNG in blocks: Debian 12's arc4random() makes one
 * getrandom() system call per number, two per upstream query.
 */
#ifndef ACRDNS_RANDOM_H
#define ACRDNS_RANDOM_H

#include <stdint.h>

/** @return a uniformly distributed number in [0, bound), bound > 0. */
uint32_t random_uniform(uint32_t bound);

#endif
