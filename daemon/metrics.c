/**
 * \file metrics.c
 * Counters in the Prometheus text format (version 0.0.4), for
 * `acrdnsctl metrics` and, when metrics_listen is set, for HTTP scrapes.
 * libmicrohttpd runs without threads of its own: its epoll descriptor is
 * watched on our loop and MHD_run() is called from there, so a scrape reads
 * the counters between two queries and needs no locks.
 */
#include "autoconf.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef HAVE_MICROHTTPD
#include <microhttpd.h>
#endif

#include "address.h"
#include "cache.h"
#include "discovery.h"
#include "health.h"
#include "log.h"
#include "loopstall.h"
#include "metrics.h"
#include "nft.h"
#include "policy.h"
#include "reload.h"
#include "server.h"
#include "text.h"
#include "upstream.h"
#include "worker.h"

/* ---- rendering ---- */

/** A label value with \ " and newline escaped, as the format asks. */
static const char *label(const char *v, char *buf, size_t len)
{
	size_t n = 0;

	for (; *v && n + 3 < len; v++) {
		if (*v == '\\' || *v == '"' || *v == '\n') {
			buf[n++] = '\\';
			buf[n++] = *v == '\n' ? 'n' : *v;
		} else {
			buf[n++] = *v;
		}
	}
	buf[n] = '\0';
	return buf;
}

static void head(struct text *o, const char *name, const char *type, const char *help)
{
	text_put(o, "# HELP acrdns_%s %s\n# TYPE acrdns_%s %s\n", name, help, name, type);
}

/** The labels of one upstream server: upstream="ADDR#PORT",zone="ZONE" ("." for `upstreams`). */
static char *server_labels(const char *zone, const struct cfg_addr *addr, char *buf, size_t len)
{
	char a[64], la[160], lz[WIRE_NAME_STRLEN * 2];

	address_str((const struct sockaddr *)&addr->ss, a, sizeof(a));
	snprintf(buf, len, "upstream=\"%s\",zone=\"%s\"", label(a, la, sizeof(la)),
		 label(zone, lz, sizeof(lz)));
	return buf;
}

static void upstream_metric(void *arg, const char *zone, const struct cfg_addr *addr,
			    const struct upstream_counters *n)
{
	struct text *o = arg;
	char l[WIRE_NAME_STRLEN * 2 + 256];

	server_labels(zone, addr, l, sizeof(l));
	text_put(o, "acrdns_upstream_queries_total{%s} %" PRIu64 "\n", l, n->sent);
	text_put(o, "acrdns_upstream_replies_total{%s} %" PRIu64 "\n", l, n->replies);
	text_put(o, "acrdns_upstream_timeouts_total{%s} %" PRIu64 "\n", l, n->timeouts);
	text_put(o, "acrdns_upstream_errors_total{%s} %" PRIu64 "\n", l, n->errors);
}

static void upstream_histogram(void *arg, const char *zone, const struct cfg_addr *addr,
			       const struct upstream_counters *n)
{
	struct text *o = arg;
	char l[WIRE_NAME_STRLEN * 2 + 256];
	uint64_t sum = 0;

	server_labels(zone, addr, l, sizeof(l));
	for (int b = 0; b < UPSTREAM_RTT_BUCKETS; b++) {
		sum += n->rtt_buckets[b];
		text_put(o, "acrdns_upstream_rtt_seconds_bucket{%s,le=\"%g\"} %" PRIu64 "\n", l,
		    upstream_rtt_bounds[b], sum);
	}
	sum += n->rtt_buckets[UPSTREAM_RTT_BUCKETS];
	text_put(o, "acrdns_upstream_rtt_seconds_bucket{%s,le=\"+Inf\"} %" PRIu64 "\n", l, sum);
	text_put(o, "acrdns_upstream_rtt_seconds_sum{%s} %.6f\n", l, n->rtt_sum);
	text_put(o, "acrdns_upstream_rtt_seconds_count{%s} %" PRIu64 "\n", l, sum);
}

struct disc_pass {
	struct text *o;
	int what;
};

static void discovery_metric(void *arg, const struct discovery_info *i)
{
	struct disc_pass *p = arg;
	char l[600];

	label(i->login, l, sizeof(l));
	if (p->what == 0) {
		text_put(p->o, "acrdns_discovery_runs_total{registry=\"%s\",result=\"success\"} %" PRIu64 "\n",
		    l, i->successes);
		text_put(p->o, "acrdns_discovery_runs_total{registry=\"%s\",result=\"failure\"} %" PRIu64 "\n",
		    l, i->failures);
	} else {
		text_put(p->o, "acrdns_discovery_last_success_timestamp_seconds{registry=\"%s\"} %lld\n", l,
		    (long long)i->last_success);
	}
}

char *metrics_render(struct server *s)
{
	static const char *const transports[] = { "udp", "tcp" };
	struct text o = { 0 };
	char l[600];
	struct stats st;

	workers_total(s, &st);
	head(&o, "build_info", "gauge", "Version of the running acrdnsd.");
	text_put(&o, "acrdns_build_info{version=\"%s\"} 1\n", PACKAGE_VERSION);
	head(&o, "uptime_seconds", "gauge", "Seconds since the daemon started.");
	text_put(&o, "acrdns_uptime_seconds %.0f\n", ev_now(s->loop) - s->started);
	char why[400];
	head(&o, "ready", "gauge", "1 when GET /ready would answer 200.");
	text_put(&o, "acrdns_ready %d\n", health_ready(s, why, sizeof(why)) ? 1 : 0);
	head(&o, "loop_stall_seconds", "gauge", "Longest round of the main event loop's callbacks "
	     "since start: answers on its sockets waited as long.");
	text_put(&o, "acrdns_loop_stall_seconds %.6f\n", loopstall_max(s->stall));

	head(&o, "queries_total", "counter", "Queries by transport and policy verdict.");
	for (int t = 0; t < 2; t++)
		for (int v = VERDICT_ALLOW; v < VERDICT_COUNT; v++)
			text_put(&o, "acrdns_queries_total{transport=\"%s\",verdict=\"%s\"} %" PRIu64 "\n",
			    transports[t], policy_verdict_name((enum verdict)v), st.verdicts[t][v]);
	/* Every counter of `acrdnsctl stats`, under the same name. */
	for (const struct stats_field *f = stats_fields; f->name; f++) {
		char name[80];
		snprintf(name, sizeof(name), "%s_total", f->name);
		head(&o, name, "counter", "See acrdnsctl(8), stats.");
		text_put(&o, "acrdns_%s %" PRIu64 "\n", name, stats_get(&st, f));
	}

	head(&o, "cache_entries", "gauge", "Answers in the cache.");
	text_put(&o, "acrdns_cache_entries %zu\n", cache_entries(s->cache));
	head(&o, "cache_bytes", "gauge", "Bytes the cache accounts for.");
	text_put(&o, "acrdns_cache_bytes %zu\n", cache_bytes(s->cache));
	head(&o, "cache_size_bytes", "gauge", "The configured cache size.");
	text_put(&o, "acrdns_cache_size_bytes %" PRIu64 "\n", s->cfg->cache_size);
	head(&o, "inflight", "gauge", "Questions waiting for an upstream answer.");
	text_put(&o, "acrdns_inflight %zu\n", upstream_inflight(s->up));
	size_t idle, sockets = upstream_sockets(s->up, &idle);
	head(&o, "upstream_sockets", "gauge", "UDP sockets open to the upstream servers, by state.");
	text_put(&o, "acrdns_upstream_sockets{state=\"busy\"} %zu\n", sockets - idle);
	text_put(&o, "acrdns_upstream_sockets{state=\"idle\"} %zu\n", idle);
	head(&o, "tcp_connections", "gauge", "Open client TCP connections.");
	text_put(&o, "acrdns_tcp_connections %u\n", s->tcp_conns);
	head(&o, "rules", "gauge", "Rules in the running policy.");
	text_put(&o, "acrdns_rules %zu\n", policy_rule_count(s->policy));
	head(&o, "policy_builds_total", "counter",
	     "Tables built since start: the rule table (start-up and each reload, off the loop), "
	     "the registries' names alone (each discovery change).");
	text_put(&o, "acrdns_policy_builds_total{table=\"rules\"} %lu\n", 1 + reload_builds(s->reloads));
	text_put(&o, "acrdns_policy_builds_total{table=\"registry_names\"} %lu\n", s->names_builds);

	head(&o, "upstream_queries_total", "counter", "Attempts sent to each upstream server.");
	upstream_each(s->up, upstream_metric, &o);
	head(&o, "upstream_rtt_seconds", "histogram", "Round-trip time of upstream replies.");
	upstream_each(s->up, upstream_histogram, &o);

	head(&o, "registry_endpoints", "gauge", "Data endpoints allowed for each registry.");
	for (size_t i = 0; i < s->policy->n_registries; i++) {
		const struct policy_registry *r = &s->policy->registries[i];
		text_put(&o, "acrdns_registry_endpoints{registry=\"%s\"} %zu\n",
		    label(r->login_server, l, sizeof(l)), r->n_endpoints);
	}
	head(&o, "discovery_runs_total", "counter", "Endpoint discovery runs by result.");
	discovery_each(s->disc, discovery_metric, &(struct disc_pass){ &o, 0 });
	head(&o, "discovery_last_success_timestamp_seconds", "gauge",
	     "Unix time of the last good discovery document (0: none since start).");
	discovery_each(s->disc, discovery_metric, &(struct disc_pass){ &o, 1 });

	struct nft_counters nc;
	if (nft_counters(s->nft, &nc)) {
		head(&o, "nft_addresses_total", "counter", "Addresses added to the nftables sets.");
		text_put(&o, "acrdns_nft_addresses_total %" PRIu64 "\n", nc.added);
		head(&o, "nft_batches_total", "counter", "nftables update batches committed.");
		text_put(&o, "acrdns_nft_batches_total %" PRIu64 "\n", nc.batches);
		head(&o, "nft_errors_total", "counter", "nftables update batches that failed.");
		text_put(&o, "acrdns_nft_errors_total %" PRIu64 "\n", nc.errors);
		head(&o, "nft_answers_held_total", "counter",
		     "Answers held until their new addresses were committed.");
		text_put(&o, "acrdns_nft_answers_held_total %" PRIu64 "\n", nc.held);
		head(&o, "nft_answers_unconfirmed_total", "counter",
		     "Answers sent before their new addresses were confirmed in the sets.");
		text_put(&o, "acrdns_nft_answers_unconfirmed_total %" PRIu64 "\n", nc.unconfirmed);
	}
	if (o.oom) {
		free(o.buf);
		return NULL;
	}
	return o.buf;
}

/* ---- HTTP ---- */

#ifdef HAVE_MICROHTTPD

struct metrics_http {
	struct server *srv;
	struct MHD_Daemon *mhd;
	struct cfg_addr addr;
	ev_io io;
	ev_timer timer;
};

static enum MHD_Result answer(void *cls, struct MHD_Connection *conn, const char *url,
			      const char *method, const char *version, const char *upload,
			      size_t *upload_len, void **state)
{
	struct metrics_http *m = cls;
	struct MHD_Response *r;
	unsigned code = MHD_HTTP_OK;
	const char *type = "text/plain; version=0.0.4; charset=utf-8";
	char *body = NULL;
	(void)version;
	(void)upload;

	if (*upload_len) {
		*upload_len = 0;     /* a body is not for us: ignore it */
		return MHD_YES;
	}
	(void)state;
	bool probe = false;
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		code = MHD_HTTP_METHOD_NOT_ALLOWED;
	} else if (strcmp(url, "/health") == 0 || strcmp(url, "/ready") == 0) {
		/* Answered here, on the loop: an answer to /health proves the loop turns. */
		char reason[400], buf[512];
		bool ready = url[1] == 'h' || health_ready(m->srv, reason, sizeof(reason));
		if (ready)
			snprintf(buf, sizeof(buf), "{\"status\":\"%s\"}\n", url[1] == 'h' ? "alive" : "ready");
		else
			snprintf(buf, sizeof(buf), "{\"status\":\"not ready\",\"reason\":\"%s\"}\n", reason);
		code = ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE;
		body = strdup(buf);
		type = "application/json";
		probe = true;
		if (!body)
			code = MHD_HTTP_INTERNAL_SERVER_ERROR;
	} else if (strcmp(url, "/metrics") != 0) {
		code = MHD_HTTP_NOT_FOUND;
	} else if (!(body = metrics_render(m->srv))) {
		code = MHD_HTTP_INTERNAL_SERVER_ERROR;
	}
	if (probe && body) {
		r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
	} else if (code != MHD_HTTP_OK) {
		static const char text[] = "acrdnsd serves GET /metrics, /health and /ready\n";
		type = "text/plain; charset=utf-8";
		r = MHD_create_response_from_buffer(sizeof(text) - 1, (void *)text, MHD_RESPMEM_PERSISTENT);
	} else {
		r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
	}
	if (!r) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	if (code == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	enum MHD_Result rc = MHD_queue_response(conn, code, r);
	MHD_destroy_response(r);
	return rc;
}

static void rearm(struct metrics_http *m)
{
	MHD_UNSIGNED_LONG_LONG ms;

	ev_timer_stop(m->srv->loop, &m->timer);
	if (MHD_get_timeout(m->mhd, &ms) == MHD_YES) {
		ev_timer_set(&m->timer, (double)ms / 1000.0, 0);
		ev_timer_start(m->srv->loop, &m->timer);
	}
}

/** Connections ready or a timeout due: let libmicrohttpd work, then wait again. */
static void serve(struct metrics_http *m)
{
	MHD_run(m->mhd);
	rearm(m);
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	serve(w->data);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	serve(w->data);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	(void)cls;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	msg[strcspn(msg, "\n")] = '\0';
	log_warn("metrics_listen: %s", msg);
}

static void http_close(struct metrics_http *m)
{
	if (!m->mhd)
		return;
	ev_io_stop(m->srv->loop, &m->io);
	ev_timer_stop(m->srv->loop, &m->timer);
	MHD_stop_daemon(m->mhd);
	m->mhd = NULL;
	memset(&m->addr, 0, sizeof(m->addr));
}

int metrics_configure(struct server *s, const struct config *cfg)
{
	struct metrics_http *m = s->metrics;
	char name[64];

	if (!m) {
		if (!cfg->metrics_listen.len)
			return 0;
		if (!(m = s->metrics = calloc(1, sizeof(*m)))) {
			log_err("metrics_listen: out of memory");
			return -1;
		}
		m->srv = s;
		ev_init(&m->io, io_cb);
		ev_init(&m->timer, timer_cb);
		m->io.data = m->timer.data = m;
	}
	if (m->mhd && address_equal(&m->addr, &cfg->metrics_listen))
		return 0;
	if (!cfg->metrics_listen.len) {
		http_close(m);
		return 0;
	}
	address_str((const struct sockaddr *)&cfg->metrics_listen.ss, name, sizeof(name));
	unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG |
			 (cfg->metrics_listen.ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0);
	struct MHD_Daemon *d = MHD_start_daemon(flags, 0, NULL, NULL, answer, m,
		MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
		MHD_OPTION_SOCK_ADDR, (const struct sockaddr *)&cfg->metrics_listen.ss,
		MHD_OPTION_CONNECTION_LIMIT, 16u,
		MHD_OPTION_PER_IP_CONNECTION_LIMIT, 4u,
		MHD_OPTION_CONNECTION_TIMEOUT, 10u,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)32768,
		MHD_OPTION_END);
	if (!d) {
		log_err("metrics_listen %s: cannot listen (%s)%s", name, strerror(errno),
			errno == EACCES ? "; ports below 1024 need CAP_NET_BIND_SERVICE" : "");
		return -1;
	}
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_EPOLL_FD);
	if (!info) {
		log_err("metrics_listen %s: libmicrohttpd has no epoll descriptor", name);
		MHD_stop_daemon(d);
		return -1;
	}
	http_close(m);
	m->mhd = d;
	m->addr = cfg->metrics_listen;
	ev_io_set(&m->io, info->epoll_fd, EV_READ);
	ev_io_start(s->loop, &m->io);
	rearm(m);
	log_info("metrics on http://%s/metrics", name);
	return 0;
}

void metrics_free(struct server *s)
{
	if (!s->metrics)
		return;
	http_close(s->metrics);
	free(s->metrics);
	s->metrics = NULL;
}

#else

int metrics_configure(struct server *s, const struct config *cfg)
{
	(void)s;
	if (cfg->metrics_listen.len) {
		log_err("metrics_listen: this acrdnsd was built without libmicrohttpd; "
			"use 'acrdnsctl metrics'");
		return -1;
	}
	return 0;
}

void metrics_free(struct server *s)
{
	(void)s;
}

#endif
