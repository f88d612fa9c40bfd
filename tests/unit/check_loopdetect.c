/* Loop detection: which names are probes, answered here and never forwarded. */
#include "autoconf.h"

#include "check_suites.h"
#include "loopdetect.h"
#include "wire.h"

static bool is_probe(const char *text)
{
	uint8_t name[WIRE_NAME_MAX + 1];
	int n = wire_name_from_str(text, name);

	ck_assert_int_gt(n, 0);
	return loopdetect_is_probe(name, (size_t)n);
}

START_TEST(probe_names_are_the_suffix_and_below)
{
	ck_assert(is_probe("0123456789abcdef.acrdns-loop.test"));
	ck_assert(is_probe("acrdns-loop.test"));
	ck_assert(is_probe("a.b.acrdns-loop.test."));
	/* 0x20 case randomisation by a resolver on the way must not hide a probe. */
	static const uint8_t upper[] = "\0200123456789ABCDEF\013ACRDNS-Loop\004TEST";
	ck_assert(loopdetect_is_probe(upper, sizeof(upper)));
}
END_TEST

START_TEST(other_names_are_not_probes)
{
	ck_assert(!is_probe("test"));
	ck_assert(!is_probe("loop.test"));
	ck_assert(!is_probe("xacrdns-loop.test"));
	ck_assert(!is_probe("acrdns-loop.test.example"));
	ck_assert(!is_probe("contoso.azurecr.io"));
	ck_assert(!is_probe("."));
	/* The suffix inside one label is only bytes of that label. */
	static const uint8_t inside[] = "\022x\013acrdns-loop\004test";
	ck_assert(!loopdetect_is_probe(inside, sizeof(inside)));
}
END_TEST

Suite *loopdetect_suite(void)
{
	Suite *s = suite_create("loopdetect");
	TCase *tc = tcase_create("names");

	tcase_add_test(tc, probe_names_are_the_suffix_and_below);
	tcase_add_test(tc, other_names_are_not_probes);
	suite_add_tcase(s, tc);
	return s;
}
