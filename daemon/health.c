/**
 * \file health.c
 * The readiness check behind GET /ready and `acrdnsctl wait-ready`.  Pure
 * reads of the server's state on its loop: nothing here waits.
 */
#include "autoconf.h"

#include <stdio.h>
#include <string.h>

#include "discovery.h"
#include "health.h"
#include "loopdetect.h"
#include "server.h"
#include "upstream.h"

struct missing {
	char *reason;
	size_t len;
	bool found;
};

static void check_registry(void *arg, const struct discovery_info *i)
{
	struct missing *m = arg;

	if (m->found || i->endpoints)
		return;
	m->found = true;
	snprintf(m->reason, m->len, "registry %s has no endpoint set yet: discovery (%s) has not "
		 "succeeded and nothing was saved%s%s", i->login, i->source,
		 i->last_error[0] ? "; last error: " : "", i->last_error);
	/* The reason goes into JSON as it is: keep it free of quotes and backslashes. */
	for (char *p = m->reason; *p; p++)
		if (*p == '"' || *p == '\\' || *p == '\n')
			*p = '\'';
}

bool health_ready(struct server *s, char *reason, size_t len)
{
	struct missing m = { reason, len, false };

	if (!s->policy) {
		snprintf(reason, len, "the policy is not loaded yet");
		return false;
	}
	if (s->disc)
		discovery_each(s->disc, check_registry, &m);
	if (m.found)
		return false;
	if (loopdetect_pending(s->loopdetect)) {
		snprintf(reason, len, "checking the upstream servers for loops");
		return false;
	}
	if (!s->up || upstream_count(s->up) == 0) {
		snprintf(reason, len, "no usable upstream server (see acrdnsctl status and the log)");
		return false;
	}
	reason[0] = '\0';
	return true;
}
