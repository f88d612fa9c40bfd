/**
 * \file random.c
 * A block of getrandom() output consumed a word at a time.  Used words are
 * wiped, so the pool never holds an ID or port already sent.
 */
#include "autoconf.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "random.h"

#define POOL_WORDS 256

static uint32_t pool[POOL_WORDS];
static unsigned left;

static uint32_t random_u32(void)
{
	if (left == 0) {
		size_t have = 0;
		while (have < sizeof(pool)) {
			ssize_t n = getrandom((char *)pool + have, sizeof(pool) - have, 0);
			if (n > 0)
				have += (size_t)n;
			else
				arc4random_buf((char *)pool + have, sizeof(pool) - have), have = sizeof(pool);
		}
		left = POOL_WORDS;
	}
	uint32_t v = pool[--left];
	pool[left] = 0;
	return v;
}

uint32_t random_uniform(uint32_t bound)
{
	/* Reject the top partial range so every value is equally likely. */
	uint32_t min = -bound % bound, v;

	do
		v = random_u32();
	while (v < min);
	return v % bound;
}
