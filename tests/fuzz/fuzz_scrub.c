/* An upstream reply through the answer scrubber, under the fuzz policy
 * (filter mode, storage denied, a registry allowed).  Whatever comes in,
 * a rebuilt message must be one the scrubber itself keeps whole: scrubbing
 * twice changes nothing, and the cache accepts what the scrubber wrote. */
#include "autoconf.h"

#include "fuzz_common.h"
#include "scrub.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_server_init();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t out[65535], again[65535];
	static struct cache_answer a;
	struct scrub_chain c;
	struct scrub_result r;
	size_t n, m;

	if (scrub_chain_walk(data, size, &c) == 0)
		(void)scrub_chain_invalid(&c);
	if (scrub_answer(fuzz_srv.policy, data, size, out, sizeof(out), &n, &r) != SCRUB_REWRITTEN)
		return 0;
	if (n > sizeof(out) || r.removed[0] + r.removed[1] + r.removed[2] == 0)
		abort();
	if (scrub_answer(fuzz_srv.policy, out, n, again, sizeof(again), &m, &r) != SCRUB_CLEAN)
		abort(); /* not idempotent: the rebuild changed what the rules see */
	if (cache_prepare(data, size, &fuzz_srv.ttl, &a) == 0 &&
	    cache_prepare(out, n, &fuzz_srv.ttl, &a) < 0)
		abort(); /* the cache took the reply but not its scrubbed form */
	return 0;
}
