/* An answer as a client would get it, walked for the addresses that go
 * into the nftables sets (its CNAME chain from the question). */
#include "autoconf.h"

#include <string.h>

#include "nft.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void count(void *arg, int family, const uint8_t *addr, uint32_t ttl)
{
	uint8_t copy[16];

	/* Touch every byte the walk hands out, so ASan sees any overrun. */
	memcpy(copy, addr, family == 4 ? 4 : 16);
	*(size_t *)arg += copy[0] + (ttl & 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t n = 0;

	nft_answer_addresses(data, size, count, &n);
	return 0;
}
