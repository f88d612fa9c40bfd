/* A discovery document in either shape; what it accepts must be the registry's own. */
#include "autoconf.h"

#include <stdlib.h>
#include <string.h>

#include "discovery_doc.h"
#include "policy.h"
#include "regname.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char why[600], reason[300];
	char **list = NULL;

	if (discovery_doc_parse((const char *)data, size, "contoso.azurecr.io", &list, why,
				sizeof(why)) == DISCOVERY_OK) {
		for (char **e = list; *e; e++)
			if (regname_check_endpoint("contoso.azurecr.io", *e, reason, sizeof(reason)) < 0)
				abort(); /* a foreign name got through */
	} else if (list) {
		abort();
	}
	discovery_list_free(list);
	return 0;
}
