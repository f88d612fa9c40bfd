/* A configuration file, and the policy built from it when it loads. */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "config.h"
#include "hash.h"
#include "log.h"
#include "policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[64];
	char err[1024];
	FILE *f;

	if (!path[0]) {
		char dir[] = "/tmp/acrdns-fuzz-config-XXXXXX";
		if (!mkdtemp(dir))
			abort();
		snprintf(path, sizeof(path), "%s/acrdnsd.conf", dir);
		hash_init();
		log_set_level(LOG_LVL_ERR);
	}
	if (!(f = fopen(path, "w")))
		abort();
	fwrite(data, 1, size, f);
	fclose(f);
	struct config *cfg = config_load(path, err, sizeof(err));
	if (cfg) {
		struct policy *p = policy_new(cfg, NULL, err, sizeof(err));
		policy_free(p);
		config_free(cfg);
	}
	return 0;
}
