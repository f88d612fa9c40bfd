/* The cache: preparing upstream answers, aging, negative answers, eviction
 * by bytes, stale entries and the key's DO/CD bits. */
#include "autoconf.h"

#include <string.h>

#include "cache.h"
#include "check_suites.h"
#include "wire.h"

static const struct cache_ttl limits = { 0, 86400, 300, 3600 };

/* Build a reply for www.example.com/A with n A records of the given TTL,
 * plus an OPT record at the end. */
static size_t make_reply(uint8_t *buf, uint16_t rcode, int n, uint32_t ttl, bool soa,
			 uint32_t soa_ttl, uint32_t soa_min)
{
	static const uint8_t q[] = "\003www\007example\003com\000\000\001\000\001";
	size_t len = 12 + sizeof(q) - 1;

	memset(buf, 0, 12);
	wire_put16(buf, 0x1234);
	wire_put16(buf + 2, (uint16_t)(0x8180 | rcode));
	wire_put16(buf + 4, 1);
	wire_put16(buf + 6, (uint16_t)n);
	wire_put16(buf + 8, soa ? 1 : 0);
	wire_put16(buf + 10, 1);
	memcpy(buf + 12, q, sizeof(q) - 1);
	for (int i = 0; i < n; i++) {
		uint8_t *p = buf + len;
		wire_put16(p, 0xc00c);
		wire_put16(p + 2, 1);
		wire_put16(p + 4, 1);
		wire_put32(p + 6, ttl + (uint32_t)i);
		wire_put16(p + 10, 4);
		p[12] = 192; p[13] = 0; p[14] = 2; p[15] = (uint8_t)i;
		len += 16;
	}
	if (soa) {
		uint8_t *p = buf + len;
		/* owner example.com (pointer to offset 16), mname/rname as pointers */
		wire_put16(p, 0xc010);
		wire_put16(p + 2, 6);
		wire_put16(p + 4, 1);
		wire_put32(p + 6, soa_ttl);
		wire_put16(p + 10, 4 + 20);
		wire_put16(p + 12, 0xc010);
		wire_put16(p + 14, 0xc010);
		wire_put32(p + 16, 1);
		wire_put32(p + 20, 3600);
		wire_put32(p + 24, 600);
		wire_put32(p + 28, 86400);
		wire_put32(p + 32, soa_min);
		len += 36;
	}
	/* OPT */
	uint8_t *p = buf + len;
	p[0] = 0;
	wire_put16(p + 1, 41);
	wire_put16(p + 3, 1232);
	wire_put32(p + 5, 0);
	wire_put16(p + 9, 0);
	return len + 11;
}

static struct wire_query client_query(const char *spelled, uint16_t id)
{
	struct wire_query q;
	memset(&q, 0, sizeof(q));
	q.id = id;
	q.flags = 0x0100;
	q.qtype = 1;
	q.qclass = 1;
	q.qname_len = (uint16_t)wire_name_from_str(spelled, q.qname);
	memcpy(q.qname_raw, spelled[0] == 'W' ? "\003WWW\007Example\003COM" : "\003www\007example\003com", 17);
	q.has_question = true;
	return q;
}

static struct cache_key key_for(const struct wire_query *q, uint8_t flags)
{
	struct cache_key k = { q->qname, q->qname_len, q->qtype, q->qclass, flags };
	return k;
}

START_TEST(prepare_strips_opt_and_finds_ttls)
{
	static struct cache_answer a;
	uint8_t buf[1024];
	size_t len = make_reply(buf, 0, 3, 100, false, 0, 0);

	ck_assert_int_eq(cache_prepare(buf, len, &limits, &a), 0);
	ck_assert_uint_eq(a.len, len - 11);
	ck_assert_uint_eq(wire_get16(a.msg + 10), 0);
	ck_assert_uint_eq(a.nttl, 3);
	ck_assert_uint_eq(a.ttl, 100);
	ck_assert_uint_eq(wire_get32(a.msg + a.ttl_off[2]), 102);
	/* truncated message */
	ck_assert_int_eq(cache_prepare(buf, len - 20, &limits, &a), -1);
}
END_TEST

START_TEST(hit_ages_ttls_and_echoes_client)
{
	static struct cache_answer a;
	uint8_t buf[1024], out[1024];
	struct cache *c = cache_new(1 << 20);
	struct wire_query q = client_query("www.example.com", 1);
	struct cache_key k = key_for(&q, 0);
	struct cache_msg m;
	uint32_t age, gen;
	bool cname;
	size_t len = make_reply(buf, 0, 2, 100, false, 0, 0);

	ck_assert_int_eq(cache_prepare(buf, len, &limits, &a), 0);
	cache_insert(c, &k, &a, 1000000, 3600, 7);
	ck_assert_int_eq(cache_lookup(c, &k, 1000000 + 30500, &m, &age, &gen, &cname), CACHE_FRESH);
	ck_assert_uint_eq(age, 30);
	ck_assert_uint_eq(gen, 7);
	struct wire_query q2 = client_query("WWW.Example.COM", 0xabcd);
	size_t n = cache_render(&m, age, false, &q2, out);
	ck_assert_uint_eq(n, a.len);
	ck_assert_uint_eq(wire_get16(out), 0xabcd);
	ck_assert_mem_eq(out + 12, "\003WWW\007Example\003COM", 17);
	ck_assert_uint_eq(wire_get32(out + a.ttl_off[0]), 70);
	ck_assert_uint_eq(wire_get32(out + a.ttl_off[1]), 71);
	/* past the TTL: stale until stale_ttl runs out, then gone */
	ck_assert_int_eq(cache_lookup(c, &k, 1000000 + 100000, &m, &age, &gen, &cname), CACHE_STALE);
	n = cache_render(&m, age, true, &q2, out);
	ck_assert_uint_eq(wire_get32(out + a.ttl_off[0]), CACHE_STALE_TTL);
	ck_assert_int_eq(cache_lookup(c, &k, 1000000 + 100000 + 3600000, &m, &age, &gen, &cname),
			 CACHE_MISS);
	ck_assert_uint_eq(cache_entries(c), 0);
	cache_free(c);
}
END_TEST

START_TEST(ttl_limits_applied)
{
	static struct cache_answer a;
	uint8_t buf[1024];
	struct cache_ttl lim = { 60, 120, 300, 0 };

	size_t len = make_reply(buf, 0, 1, 5, false, 0, 0);
	ck_assert_int_eq(cache_prepare(buf, len, &lim, &a), 0);
	ck_assert_uint_eq(a.ttl, 60);
	ck_assert_uint_eq(wire_get32(a.msg + a.ttl_off[0]), 60);
	len = make_reply(buf, 0, 1, 5000, false, 0, 0);
	ck_assert_int_eq(cache_prepare(buf, len, &lim, &a), 0);
	ck_assert_uint_eq(a.ttl, 120);
	/* a TTL with the top bit set counts as 0 (RFC 2181 8) */
	len = make_reply(buf, 0, 1, 0x80000000u, false, 0, 0);
	ck_assert_int_eq(cache_prepare(buf, len, &limits, &a), 0);
	ck_assert_uint_eq(a.ttl, 0);
}
END_TEST

START_TEST(negative_answers_follow_rfc2308)
{
	static struct cache_answer a;
	uint8_t buf[1024];

	/* NXDOMAIN: min(SOA TTL, SOA minimum), capped by negative_ttl */
	size_t len = make_reply(buf, 3, 0, 0, true, 900, 200);
	ck_assert_int_eq(cache_prepare(buf, len, &limits, &a), 0);
	ck_assert_uint_eq(a.ttl, 200);
	ck_assert_uint_eq(wire_get32(a.msg + a.ttl_off[0]), 200);
	len = make_reply(buf, 3, 0, 0, true, 9000, 9000);
	ck_assert_int_eq(cache_prepare(buf, len, &limits, &a), 0);
	ck_assert_uint_eq(a.ttl, 300);
	/* NODATA likewise */
	len = make_reply(buf, 0, 0, 0, true, 50, 80);
	ck_assert_int_eq(cache_prepare(buf, len, &limits, &a), 0);
	ck_assert_uint_eq(a.ttl, 50);
	/* no SOA: not cached */
	len = make_reply(buf, 3, 0, 0, false, 0, 0);
	ck_assert_int_eq(cache_prepare(buf, len, &limits, &a), 0);
	ck_assert_uint_eq(a.ttl, 0);
	/* SERVFAIL: never cached */
	len = make_reply(buf, 2, 1, 100, false, 0, 0);
	ck_assert_int_eq(cache_prepare(buf, len, &limits, &a), 0);
	ck_assert_uint_eq(a.ttl, 0);
}
END_TEST

START_TEST(key_includes_do_and_cd)
{
	static struct cache_answer a;
	uint8_t buf[1024];
	struct cache *c = cache_new(1 << 20);
	struct wire_query q = client_query("www.example.com", 1);
	struct cache_key plain = key_for(&q, 0), dnssec = key_for(&q, CACHE_KEY_DO),
			 cd = key_for(&q, CACHE_KEY_CD);
	struct cache_msg m;
	uint32_t age, gen;
	bool cname;

	ck_assert_int_eq(cache_prepare(buf, make_reply(buf, 0, 1, 100, false, 0, 0), &limits, &a), 0);
	cache_insert(c, &plain, &a, 0, 0, 1);
	ck_assert_int_eq(cache_lookup(c, &plain, 0, &m, &age, &gen, &cname), CACHE_FRESH);
	ck_assert_int_eq(cache_lookup(c, &dnssec, 0, &m, &age, &gen, &cname), CACHE_MISS);
	ck_assert_int_eq(cache_lookup(c, &cd, 0, &m, &age, &gen, &cname), CACHE_MISS);
	cache_free(c);
}
END_TEST

START_TEST(eviction_by_bytes_is_lru)
{
	static struct cache_answer a;
	uint8_t buf[1024];
	struct cache *c = cache_new(16 * 1024);
	struct cache_msg m;
	uint32_t age, gen;
	bool cname;
	char name[64];
	uint8_t wire[300][256];
	struct cache_key keys[300];

	ck_assert_int_eq(cache_prepare(buf, make_reply(buf, 0, 4, 100, false, 0, 0), &limits, &a), 0);
	for (int i = 0; i < 300; i++) {
		snprintf(name, sizeof(name), "host%d.example.com", i);
		int n = wire_name_from_str(name, wire[i]);
		keys[i] = (struct cache_key){ wire[i], (uint16_t)n, 1, 1, 0 };
		cache_insert(c, &keys[i], &a, 0, 0, 1);
		/* keep the first one hot */
		ck_assert_int_eq(cache_lookup(c, &keys[0], 0, &m, &age, &gen, &cname), CACHE_FRESH);
		ck_assert_uint_le(cache_bytes(c), 16 * 1024);
	}
	ck_assert_uint_lt(cache_entries(c), 300);
	ck_assert_int_eq(cache_lookup(c, &keys[0], 0, &m, &age, &gen, &cname), CACHE_FRESH);
	ck_assert_int_eq(cache_lookup(c, &keys[1], 0, &m, &age, &gen, &cname), CACHE_MISS);
	ck_assert_int_eq(cache_lookup(c, &keys[299], 0, &m, &age, &gen, &cname), CACHE_FRESH);
	/* flush one name, then all */
	ck_assert_uint_eq(cache_flush(c, keys[299].name, keys[299].name_len), 1);
	ck_assert_int_eq(cache_lookup(c, &keys[299], 0, &m, &age, &gen, &cname), CACHE_MISS);
	cache_flush(c, NULL, 0);
	ck_assert_uint_eq(cache_entries(c), 0);
	/* Only the slot array is left, and it counts. */
	ck_assert_uint_gt(cache_bytes(c), 0);
	ck_assert_uint_le(cache_bytes(c), 16 * 1024 / 4);
	cache_free(c);
}
END_TEST

/* Open addressing: removals in the middle of probe runs (flush, expiry,
 * replacement) must leave every other entry findable. */
START_TEST(removal_keeps_every_other_entry)
{
	static struct cache_answer a;
	static uint8_t wire[3000][64];
	static struct cache_key keys[3000];
	uint8_t buf[1024];
	struct cache *c = cache_new(64 * 1024 * 1024);
	struct cache_msg m;
	uint32_t age, gen;
	bool cname;
	char name[64];
	const int n = 3000;

	ck_assert_int_eq(cache_prepare(buf, make_reply(buf, 0, 4, 100, false, 0, 0), &limits, &a), 0);
	for (int i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "h%d.example.com", i);
		int len = wire_name_from_str(name, wire[i]);
		keys[i] = (struct cache_key){ wire[i], (uint16_t)len, 1, 1, 0 };
		cache_insert(c, &keys[i], &a, 0, 0, 1);
	}
	ck_assert_uint_eq(cache_entries(c), n);
	for (int i = 0; i < n; i += 3)    /* flushed */
		ck_assert_uint_eq(cache_flush(c, keys[i].name, keys[i].name_len), 1);
	for (int i = 1; i < n; i += 3)    /* replaced */
		cache_insert(c, &keys[i], &a, 0, 0, 2);
	/* expired: looked up long past their stale time, and removed */
	ck_assert_int_eq(cache_lookup(c, &keys[2], 1000 * 1000 * 1000, &m, &age, &gen, &cname), CACHE_MISS);
	for (int i = 0; i < n; i++) {
		enum cache_status want = i % 3 == 0 || i == 2 ? CACHE_MISS : CACHE_FRESH;
		ck_assert_int_eq(cache_lookup(c, &keys[i], 0, &m, &age, &gen, &cname), want);
		if (want == CACHE_FRESH)
			ck_assert_uint_eq(gen, i % 3 == 1 ? 2 : 1);
	}
	ck_assert_uint_eq(cache_entries(c), n - n / 3 - 1);
	cache_free(c);
}
END_TEST

Suite *cache_suite(void)
{
	Suite *s = suite_create("cache");
	TCase *tc = tcase_create("cache");
	tcase_add_test(tc, prepare_strips_opt_and_finds_ttls);
	tcase_add_test(tc, hit_ages_ttls_and_echoes_client);
	tcase_add_test(tc, ttl_limits_applied);
	tcase_add_test(tc, negative_answers_follow_rfc2308);
	tcase_add_test(tc, key_includes_do_and_cd);
	tcase_add_test(tc, eviction_by_bytes_is_lru);
	tcase_add_test(tc, removal_keeps_every_other_entry);
	suite_add_tcase(s, tc);
	return s;
}
