/* Names as wire labels: reading, compression, case, presentation. */
#include "autoconf.h"

#include <string.h>

#include "check_suites.h"
#include "wire.h"

START_TEST(name_read_lowercases_and_decompresses)
{
	/* header, then "WWW.Example.COM", then a pointer to "Example.COM" */
	uint8_t msg[64] = { 0 };
	static const uint8_t name[] = "\003WWW\007Example\003COM";
	memcpy(msg + 12, name, sizeof(name));
	size_t ptr_at = 12 + sizeof(name);
	msg[ptr_at] = 3; memcpy(msg + ptr_at + 1, "ftp", 3);
	msg[ptr_at + 4] = 0xc0; msg[ptr_at + 5] = 16;
	uint8_t out[256];
	size_t pos = 12;
	ck_assert_int_eq(wire_name_read(msg, sizeof(msg), &pos, out), 17);
	ck_assert_mem_eq(out, "\003www\007example\003com", 17);
	ck_assert_uint_eq(pos, 12 + 17);
	pos = ptr_at;
	ck_assert_int_eq(wire_name_read(msg, sizeof(msg), &pos, out), 17);
	ck_assert_mem_eq(out, "\003ftp\007example\003com", 17);
	ck_assert_uint_eq(pos, ptr_at + 6);
}
END_TEST

START_TEST(name_read_rejects_bad_names)
{
	uint8_t msg[300] = { 0 };
	uint8_t out[256];
	size_t pos;

	/* pointer to itself */
	msg[12] = 0xc0; msg[13] = 12;
	pos = 12;
	ck_assert_int_eq(wire_name_read(msg, 14, &pos, out), -1);
	/* pointer into the header */
	msg[12] = 0xc0; msg[13] = 2;
	pos = 12;
	ck_assert_int_eq(wire_name_read(msg, 14, &pos, out), -1);
	/* forward pointer */
	msg[12] = 0xc0; msg[13] = 20;
	pos = 12;
	ck_assert_int_eq(wire_name_read(msg, 30, &pos, out), -1);
	/* label running past the end */
	msg[12] = 10; memcpy(msg + 13, "abc", 3);
	pos = 12;
	ck_assert_int_eq(wire_name_read(msg, 16, &pos, out), -1);
	/* 0x40 and 0x80 label types */
	msg[12] = 0x41;
	pos = 12;
	ck_assert_int_eq(wire_name_read(msg, 100, &pos, out), -1);
	/* longer than 255 bytes */
	memset(msg, 0, sizeof(msg));
	for (int i = 0; i < 5; i++) {
		msg[12 + i * 52] = 51;
		memset(msg + 13 + i * 52, 'a', 51);
	}
	pos = 12;
	ck_assert_int_eq(wire_name_read(msg, sizeof(msg), &pos, out), -1);
	/* exactly 255 bytes is fine: 4 labels of 62 + 1 of 0... build 63,63,63,61 */
	memset(msg, 0, sizeof(msg));
	size_t p = 12;
	int lens[] = { 63, 63, 63, 61 };
	for (int i = 0; i < 4; i++) {
		msg[p] = (uint8_t)lens[i];
		memset(msg + p + 1, 'b', (size_t)lens[i]);
		p += (size_t)lens[i] + 1;
	}
	msg[p] = 0;
	pos = 12;
	ck_assert_int_eq(wire_name_read(msg, sizeof(msg), &pos, out), 255);
}
END_TEST

START_TEST(labels_with_dots_and_nul_stay_labels)
{
	uint8_t name[256], other[256];
	char text[WIRE_NAME_STRLEN];
	int n = wire_name_from_str("contoso\\.azurecr.io", name);
	ck_assert_int_eq(n, 20);
	ck_assert_int_eq(wire_name_labels(name), 2);
	wire_name_str(name, text);
	ck_assert_str_eq(text, "contoso\\.azurecr.io.");
	n = wire_name_from_str("contoso.azurecr.io\\000.evil.example", other);
	ck_assert_int_eq(wire_name_labels(other), 5);
	wire_name_str(other, text);
	ck_assert_str_eq(text, "contoso.azurecr.io\\000.evil.example.");
}
END_TEST

START_TEST(from_str_lowercases_and_handles_root)
{
	uint8_t name[256];
	ck_assert_int_eq(wire_name_from_str("Contoso.AzureCR.io.", name), 20);
	ck_assert_mem_eq(name, "\007contoso\007azurecr\002io", 20);
	ck_assert_int_eq(wire_name_from_str(".", name), 1);
	ck_assert_int_eq(name[0], 0);
	ck_assert_int_eq(wire_name_from_str("", name), -1);
	ck_assert_int_eq(wire_name_from_str("a..b", name), -1);
}
END_TEST

static size_t make_query(uint8_t *buf, uint16_t flags, uint16_t qd, const char *opt_hex)
{
	static const uint8_t q[] = "\003www\007example\003com\000\000\001\000\001";
	memset(buf, 0, 12);
	wire_put16(buf, 0xbeef);
	wire_put16(buf + 2, flags);
	wire_put16(buf + 4, qd);
	memcpy(buf + 12, q, sizeof(q) - 1);
	size_t len = 12 + sizeof(q) - 1;
	if (opt_hex) {
		wire_put16(buf + 10, 1);
		for (const char *h = opt_hex; h[0] && h[1]; h += 2) {
			unsigned v;
			sscanf(h, "%2x", &v);
			buf[len++] = (uint8_t)v;
		}
	}
	return len;
}

START_TEST(query_parse_cases)
{
	uint8_t buf[512];
	struct wire_query q;
	size_t len = make_query(buf, 0x0100, 1, NULL);

	ck_assert_int_eq(wire_query_parse(buf, len, &q), WIRE_Q_OK);
	ck_assert(!q.edns);
	ck_assert_uint_eq(q.qtype, 1);
	ck_assert_uint_eq(q.qend, len);
	ck_assert_int_eq(wire_query_parse(buf, 11, &q), WIRE_Q_DROP);
	ck_assert_int_eq(wire_query_parse(buf, len - 1, &q), WIRE_Q_FORMERR);
	len = make_query(buf, 0x8100, 1, NULL);
	ck_assert_int_eq(wire_query_parse(buf, len, &q), WIRE_Q_DROP);
	len = make_query(buf, 0x2000 | 0x0100, 1, NULL); /* opcode 4, NOTIFY */
	ck_assert_int_eq(wire_query_parse(buf, len, &q), WIRE_Q_NOTIMP);
	len = make_query(buf, 0x0100, 2, NULL);
	ck_assert_int_eq(wire_query_parse(buf, len, &q), WIRE_Q_FORMERR);
	/* found by fuzz_query: a question that is a pointer (here back to the
	 * question itself, at 12, from a name placed after a first label) */
	static const uint8_t ptrq[] = { 0xab, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0,
					1, 'a', 0xc0, 12, 0, 1, 0, 1 };
	ck_assert_int_eq(wire_query_parse(ptrq, sizeof(ptrq), &q), WIRE_Q_FORMERR);
	/* EDNS 0, size 4096, DO */
	len = make_query(buf, 0x0100, 1, "0000291000000080000000");
	ck_assert_int_eq(wire_query_parse(buf, len, &q), WIRE_Q_OK);
	ck_assert(q.edns && q.edns_do);
	ck_assert_uint_eq(q.edns_size, 4096);
	/* EDNS version 1 */
	len = make_query(buf, 0x0100, 1, "0000291000000100000000");
	ck_assert_int_eq(wire_query_parse(buf, len, &q), WIRE_Q_BADVERS);
	/* OPT owned by a non-root name */
	len = make_query(buf, 0x0100, 1, "01610000291000000000000000");
	ck_assert_int_eq(wire_query_parse(buf, len, &q), WIRE_Q_FORMERR);
	/* an option running past RDATA */
	len = make_query(buf, 0x0100, 1, "00002910000000000000060001000a6869");
	ck_assert_int_eq(wire_query_parse(buf, len, &q), WIRE_Q_FORMERR);
	/* a size below 512 is read as 512 */
	len = make_query(buf, 0x0100, 1, "0000290100000000000000");
	ck_assert_int_eq(wire_query_parse(buf, len, &q), WIRE_Q_OK);
	ck_assert_uint_eq(q.edns_size, 512);
}
END_TEST

Suite *wire_suite(void)
{
	Suite *s = suite_create("wire");
	TCase *tc = tcase_create("names");
	tcase_add_test(tc, name_read_lowercases_and_decompresses);
	tcase_add_test(tc, name_read_rejects_bad_names);
	tcase_add_test(tc, labels_with_dots_and_nul_stay_labels);
	tcase_add_test(tc, from_str_lowercases_and_handles_root);
	tcase_add_test(tc, query_parse_cases);
	suite_add_tcase(s, tc);
	return s;
}
