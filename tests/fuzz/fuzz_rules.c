/* A rule file, then lookups of names that its rules may or may not cover. */
#include "autoconf.h"

#include <stdio.h>

#include "rules.h"
#include "hash.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool init;
	char err[1024];
	FILE *f;
	struct rules *r;

	if (!init) {
		hash_init();
		init = true;
	}
	if (size == 0 || !(f = fmemopen((void *)data, size, "r")))
		return 0;
	r = rules_new();
	if (r && rules_load_stream(r, f, "fuzz.rules", err, sizeof(err)) >= 0) {
		static const char *const names[] = { "a.example", "x.blob.core.windows.net", ".", "example" };
		uint8_t wire[WIRE_NAME_MAX + 1];
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
			int n = wire_name_from_str(names[i], wire);
			if (n > 0)
				rules_find(r, wire, (size_t)n);
		}
	}
	rules_free(r);
	fclose(f);
	return 0;
}
