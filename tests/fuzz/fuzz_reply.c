/* An upstream reply: prepared for the cache (OPT stripped, TTL offsets),
 * its CNAME chain checked against the policy, stored, looked up and
 * rendered for a client that spelled the name in capitals. */
#include "autoconf.h"

#include "fuzz_common.h"
#include "query.h"

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
	static struct cache_answer a;
	static uint8_t out[65536];
	struct policy_decision d;
	uint8_t target[WIRE_NAME_MAX + 3];
	struct wire_query q = { 0 };
	size_t pos = WIRE_HDR;

	if (cache_prepare(data, size, &fuzz_srv.ttl, &a) < 0)
		return 0;
	query_chain_check(&fuzz_srv, &a, &d, target);
	int n = wire_name_read(a.msg, a.len, &pos, q.qname);
	if (n < 0 || pos + 4 > a.len)
		abort(); /* cache_prepare accepted a message without a question */
	q.qname_len = (uint16_t)n;
	memcpy(q.qname_raw, q.qname, (size_t)n);
	for (int i = 0; i < n; i++)
		if (q.qname_raw[i] >= 'a' && q.qname_raw[i] <= 'z')
			q.qname_raw[i] = (uint8_t)(q.qname_raw[i] - 32);
	q.qtype = wire_get16(a.msg + pos);
	q.qclass = wire_get16(a.msg + pos + 2);
	q.has_question = true;
	q.id = 0x4242;
	struct cache_key k = { q.qname, q.qname_len, q.qtype, q.qclass, 0 };
	cache_insert(fuzz_srv.cache, &k, &a, 1000, 10, 1);
	struct cache_msg m;
	uint32_t age, gen;
	bool has_target;
	if (cache_lookup(fuzz_srv.cache, &k, 1000 + 1500, &m, &age, &gen, &has_target) != CACHE_MISS) {
		size_t len = cache_render(&m, age, false, &q, out);
		if (len != m.len || wire_get16(out) != 0x4242)
			abort();
	}
	return 0;
}
