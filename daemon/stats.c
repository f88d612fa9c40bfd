/**
 * \file stats.c
 * Counter output.  One table names every counter, for the log line and the
 * control socket alike, so that they cannot disagree.
 */
#include "autoconf.h"

#include <inttypes.h>
#include <stdio.h>

#include "log.h"
#include "stats.h"

#define F(name) { #name, offsetof(struct stats, name) }
const struct stats_field stats_fields[] = {
	F(queries_udp), F(queries_tcp), F(dropped), F(formerr), F(notimp), F(badvers),
	F(refused_access), F(refused_class), F(allowed), F(passed), F(denied), F(local),
	F(cname_denied), F(upstream_blocked), F(scrubbed), F(audited), F(cache_hits), F(cache_misses),
	F(stale_served), F(servfail),
	F(refused_norec), F(failure_cached),
	F(truncated), F(merged), F(upstream_sent), F(upstream_tcp), F(upstream_timeouts),
	F(upstream_errors), F(upstream_bogus), F(tcp_refused), F(rate_limited),
	F(inflight_full), F(send_errors), F(upstream_loops),
	{ NULL, 0 },
};
#undef F

void stats_log(const struct stats *s)
{
	char line[2048];
	size_t n = snprintf(line, sizeof(line), "stats");

	for (const struct stats_field *f = stats_fields; f->name && n < sizeof(line); f++)
		n += (size_t)snprintf(line + n, sizeof(line) - n, " %s=%" PRIu64, f->name, stats_get(s, f));
	log_notice("%s", line);
}

void stats_add(struct stats *sum, const struct stats *s)
{
	for (const struct stats_field *f = stats_fields; f->name; f++)
		*(uint64_t *)(void *)((char *)sum + f->offset) += stats_get(s, f);
	for (int t = 0; t < 2; t++)
		for (int v = 0; v < STATS_VERDICTS; v++)
			sum->verdicts[t][v] += __atomic_load_n(&s->verdicts[t][v], __ATOMIC_RELAXED);
}
