/**
 * \file stats.c
 * Counter output.  One line, key=value, so that it greps and parses.
 */
#include "autoconf.h"

#include <inttypes.h>

#include "log.h"
#include "stats.h"

void stats_log(const struct stats *s)
{
	log_notice("stats queries_udp=%" PRIu64 " queries_tcp=%" PRIu64 " dropped=%" PRIu64
		   " formerr=%" PRIu64 " notimp=%" PRIu64 " badvers=%" PRIu64
		   " refused_access=%" PRIu64 " refused_class=%" PRIu64 " allowed=%" PRIu64
		   " passed=%" PRIu64 " denied=%" PRIu64 " local=%" PRIu64 " cname_denied=%" PRIu64
		   " cache_hits=%" PRIu64 " cache_misses=%" PRIu64 " stale_served=%" PRIu64
		   " servfail=%" PRIu64 " truncated=%" PRIu64 " merged=%" PRIu64
		   " upstream_sent=%" PRIu64 " upstream_tcp=%" PRIu64 " upstream_timeouts=%" PRIu64
		   " upstream_errors=%" PRIu64 " upstream_bogus=%" PRIu64 " tcp_refused=%" PRIu64 " rate_limited=%" PRIu64 " inflight_full=%" PRIu64
		   " send_errors=%" PRIu64,
		   s->queries_udp, s->queries_tcp, s->dropped, s->formerr, s->notimp, s->badvers,
		   s->refused_access, s->refused_class, s->allowed, s->passed, s->denied, s->local,
		   s->cname_denied, s->cache_hits, s->cache_misses, s->stale_served, s->servfail,
		   s->truncated, s->merged, s->upstream_sent, s->upstream_tcp, s->upstream_timeouts,
		   s->upstream_errors, s->upstream_bogus, s->tcp_refused, s->rate_limited, s->inflight_full, s->send_errors);
}
