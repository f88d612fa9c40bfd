/**
 * \file ratelimit.c
 * Open addressing over a fixed table; a new client takes the least recently
 * seen of the few slots it may probe, so old clients age out by themselves.
 */
#include "autoconf.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "ratelimit.h"

#define PROBES 4

struct bucket {
	uint8_t key[17];      /**< family byte, then 4 or 8 address bytes */
	uint64_t last_ms;
	double tokens;
};

struct ratelimit {
	struct bucket *slots;
	uint32_t mask;
	double per_ms;
	double burst;
};

struct ratelimit *ratelimit_new(uint32_t qps, uint32_t burst, uint32_t slots)
{
	struct ratelimit *rl = calloc(1, sizeof(*rl));
	uint32_t n = 1024;

	while (n < slots && n < (1u << 24))
		n <<= 1;
	if (!rl || !(rl->slots = calloc(n, sizeof(*rl->slots)))) {
		free(rl);
		return NULL;
	}
	rl->mask = n - 1;
	rl->per_ms = qps / 1000.0;
	rl->burst = burst ? burst : 1;
	return rl;
}

void ratelimit_free(struct ratelimit *rl)
{
	if (rl) {
		free(rl->slots);
		free(rl);
	}
}

static void client_key(const struct sockaddr *sa, uint8_t *key)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	memset(key, 0, 17);
	if (sa->sa_family == AF_INET) {
		key[0] = 4;
		memcpy(key + 1, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		return;
	}
	const uint8_t *a = (const uint8_t *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
	if (memcmp(a, mapped, 12) == 0) {
		key[0] = 4;
		memcpy(key + 1, a + 12, 4);
	} else {
		key[0] = 6;
		memcpy(key + 1, a, 8);  /* the /64 */
	}
}

bool ratelimit_allow(struct ratelimit *rl, const struct sockaddr *client, uint64_t now_ms)
{
	uint8_t key[17];
	struct bucket *b = NULL, *oldest = NULL;

	client_key(client, key);
	uint32_t h = (uint32_t)hash_bytes(key, sizeof(key));
	for (uint32_t i = 0; i < PROBES; i++) {
		struct bucket *s = &rl->slots[(h + i) & rl->mask];
		if (s->key[0] && memcmp(s->key, key, sizeof(key)) == 0) {
			b = s;
			break;
		}
		if (!oldest || s->last_ms < oldest->last_ms)
			oldest = s;
	}
	if (!b) {
		b = oldest;
		memcpy(b->key, key, sizeof(key));
		b->tokens = rl->burst;
		b->last_ms = now_ms;
	}
	double t = b->tokens + (double)(now_ms - b->last_ms) * rl->per_ms;
	b->tokens = t > rl->burst ? rl->burst : t;
	b->last_ms = now_ms;
	if (b->tokens < 1.0)
		return false;
	b->tokens -= 1.0;
	return true;
}
