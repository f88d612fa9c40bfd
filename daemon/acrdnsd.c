/**
 * \file acrdnsd.c
 * Start-up, signals, reload and shutdown.  Failures here are fatal (the
 * daemon cannot run without its sockets or a valid policy); after start-up
 * nothing is: a bad reload keeps the running configuration.  A bad
 * configuration exits with EX_CONFIG (78), which the unit names in
 * RestartPreventExitStatus=: restarting cannot fix a file, and retries would
 * only run into systemd's start limit and lock the unit out once it is fixed.
 */
#include "autoconf.h"

#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "address.h"
#include "audit.h"
#include "control.h"
#include "discovery.h"
#include "failcache.h"
#include "hash.h"
#include "listener.h"
#include "log.h"
#include "loopdetect.h"
#include "loopstall.h"
#include "metrics.h"
#include "nft.h"
#include "notify.h"
#include "policy.h"
#include "printconf.h"
#include "privs.h"
#include "query.h"
#include "ratelimit.h"
#include "reload.h"
#include "server.h"
#include "upstream.h"
#include "wire.h"
#include "worker.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: acrdnsd [-f] [-c FILE]\n"
		"       acrdnsd -t [-c FILE]\n"
		"       acrdnsd --explain NAME [-c FILE]\n"
		"       acrdnsd --print-nft [-c FILE]\n"
		"  -c, --config FILE   configuration file (default %s)\n"
		"  -f, --foreground    stay in the foreground\n"
		"  -t, --test          check the configuration, print a summary and exit\n"
		"  -e, --explain NAME  print which rule decides NAME and exit\n"
		"      --print-nft     print an example nftables ruleset for the configured sets\n"
		"  -V, --version       print the version and exit\n"
		"  -h, --help          this text\n",
		CONFIG_DEFAULT_PATH);
}

/** A new limiter when the limits changed (buckets start full again). */
static void apply_rate_limit(struct server *s, const struct config *old, const struct config *cfg)
{
	if (old && old->rate_limit.qps == cfg->rate_limit.qps &&
	    old->rate_limit.burst == cfg->rate_limit.burst)
		return;
	ratelimit_free(s->rl);
	s->rl = NULL;
	if (cfg->rate_limit.qps && !(s->rl = ratelimit_new(cfg->rate_limit.qps, cfg->rate_limit.burst, 65536)))
		log_err("rate_limit: out of memory; queries are not limited");
}

static void apply_settings(struct server *s, const struct config *cfg)
{
	log_set_level(cfg->log_level);
	log_set_format(cfg->log_format);
	s->ttl.min_ttl = cfg->min_ttl;
	s->ttl.max_ttl = cfg->max_ttl;
	s->ttl.negative_ttl = cfg->negative_ttl;
	s->ttl.stale_ttl = cfg->stale_ttl;
}

static void push_listener(struct listener **list, struct listener *l)
{
	l->next = *list;
	*list = l;
}

/**
 * Make the listeners match cfg: keep sockets on addresses that stay, open
 * the new ones, close the rest (but sockets passed by socket activation).  Nothing changes when an address cannot be
 * opened.  @return 0, or -1 with the address and the reason in err
 */
static int reconcile_listeners(struct server *s, const struct config *cfg, char *err, size_t errlen)
{
	/* Socket activation without a `listen` key: the socket unit decides. */
	size_t n_listen = s->activated && !cfg->listen_set ? 0 : cfg->n_listen;
	struct listener **next = calloc(n_listen + 1, sizeof(*next));
	bool *fresh = calloc(n_listen + 1, sizeof(*fresh));
	int rc = 0;

	if (!next || !fresh) {
		free(next);
		free(fresh);
		log_err("out of memory opening listeners");
		return -1;
	}
	for (size_t i = 0; i < n_listen && rc == 0; i++) {
		for (struct listener *l = s->listeners; l; l = l->next)
			if (address_equal(&l->addr, &cfg->listen[i]))
				next[i] = l;
		for (size_t j = 0; j < i && next[i]; j++)
			if (next[j] == next[i])
				next[i] = NULL; /* listed twice: the second is an error below */
		if (!next[i]) {
			fresh[i] = true;
			if (!(next[i] = listener_open(s, &cfg->listen[i], query_listener_handle, s))) {
				char name[64];
				int e = errno;
				address_str((const struct sockaddr *)&cfg->listen[i].ss, name, sizeof(name));
				snprintf(err, errlen, "cannot listen on %s: %s", name, strerror(e));
				rc = -1;
			}
		}
	}
	struct listener *inherited = NULL;
	if (rc < 0) {
		for (size_t i = 0; i < n_listen; i++)
			if (fresh[i] && next[i])
				listener_close(next[i]);
	} else {
		for (struct listener *l = s->listeners, *ln; l; l = ln) {
			bool kept = false;
			ln = l->next;
			for (size_t i = 0; i < n_listen; i++)
				kept |= next[i] == l;
			if (!kept && !l->inherited)
				listener_close(l);
			else if (!kept)
				push_listener(&inherited, l);
		}
		s->listeners = inherited;
		for (size_t i = n_listen; i-- > 0;) {
			next[i]->next = s->listeners;
			s->listeners = next[i];
			if (fresh[i])
				listener_start(next[i]);
		}
	}
	free(next);
	free(fresh);
	return rc;
}

struct server_list {
	struct cfg_addr *addrs;
	size_t n;
};

static void collect_server(void *arg, const char *zone, const struct cfg_addr *addr,
			   const struct upstream_counters *n)
{
	struct server_list *l = arg;
	(void)zone;
	(void)n;

	struct cfg_addr *a = realloc(l->addrs, (l->n + 1) * sizeof(*a));
	if (!a)
		return;   /* one server unchecked; it is still used */
	l->addrs = a;
	a[l->n++] = *addr;
}

/** A server list was rebuilt: probe every server in use for loops. */
static void check_loops(void *srv)
{
	struct server *s = srv;
	struct server_list l = { NULL, 0 };

	upstream_each(s->up, collect_server, &l);
	loopdetect_check(s->loopdetect, l.addrs, l.n);
	free(l.addrs);
}

/** loopdetect found a server that leads back to us. */
static void drop_loop(void *srv, const struct cfg_addr *server)
{
	struct server *s = srv;

	upstream_drop(s->up, server);
}

/** The one-line summary for systemd's STATUS=. */
static const char *status_line(const struct server *s, char *buf, size_t len)
{
	size_t eps = 0;

	for (size_t i = 0; i < s->policy->n_registries; i++)
		eps += s->policy->registries[i].n_endpoints;
	snprintf(buf, len, "serving: %zu rules, %zu registries with %zu data endpoints, "
		 "%zu upstream servers, mode %s", policy_rule_count(s->policy),
		 s->policy->n_registries, eps, upstream_count(s->up),
		 s->cfg->mode == MODE_ALLOWLIST ? "allowlist" : "filter");
	return buf;
}

/** Milliseconds on the monotonic clock, for the time the loop spends on a change. */
static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void warn_shared_log(void *arg, const char *warning)
{
	(void)arg;
	log_warn("%s", warning);
}

/**
 * A registry's endpoints changed: new registries' names, swapped in over
 * the same rule table.  The build costs what the endpoints cost; the
 * workers stop only for the pointer swap.
 */
static void swap_registry_names(struct server *s)
{
	char err[1024];
	double t0 = now_ms();
	struct policy_names *names = policy_names_new(s->policy, s->cfg,
						      discovery_endpoints(s->disc, s->cfg),
						      err, sizeof(err));

	if (!names) {
		log_err("discovery: cannot rebuild the registries' names, the running ones stay: %s", err);
		return;
	}
	double t1 = now_ms();
	workers_stop(s->workers);
	double t2 = now_ms();
	policy_names_swap(s->policy, names);
	s->policy_gen++;
	workers_start(s->workers);
	double t3 = now_ms();
	policy_names_free(names); /* what the workers used: stopped since, they hold none of it */
	s->names_builds++;
	char status[256];
	notify_status(status_line(s, status, sizeof(status)));
	double t4 = now_ms();
	log_info("discovery: registries' names swapped in (%zu); the %zu rules stay as built; "
		 "%.2f ms on the loop (names %.2f, workers stop %.2f, swap %.2f, rest %.2f)",
		 rules_count(s->policy->names), rules_count(s->policy->rules), t4 - t0, t1 - t0,
		 t2 - t1, t3 - t2, t4 - t3);
}

/**
 * On the loop, with a configuration and policy built by the reload thread:
 * lay the registries' names over it, open listeners, reconfigure upstreams
 * and discovery, and swap.  On any error the running pair stays.
 */
static int reload_apply(void *arg, struct reload_pair *pair, char *err, size_t errlen)
{
	struct server *s = arg;
	struct config *cfg = pair->cfg;
	char status[256], uerr[512];
	double t[8];

	t[0] = now_ms();
	if (!cfg)
		goto failed; /* the build said why */
	/* Discovered names as they are now: discovery may have changed them
	 * while the rules were being built. */
	struct policy_names *names = policy_names_new(pair->policy, cfg,
						      discovery_endpoints(s->disc, cfg), err, errlen);
	if (!names)
		goto failed;
	policy_names_swap(pair->policy, names);
	policy_names_free(names);
	t[1] = now_ms();
	if (reconcile_listeners(s, cfg, err, errlen) < 0)
		goto failed;
	t[2] = now_ms();
	if (upstream_configure(s->up, cfg, uerr, sizeof(uerr)) < 0)
		log_err("reload: %s", uerr);
	t[3] = now_ms();
	if (nft_configure(s, cfg, uerr, sizeof(uerr)) < 0)
		log_err("reload: %s", uerr);
	metrics_configure(s, cfg);
	cache_set_limit(s->cache, cfg->cache_size);
	if (strcmp(cfg->user, s->cfg->user) != 0 || (cfg->group && (!s->cfg->group ||
	    strcmp(cfg->group, s->cfg->group) != 0)))
		log_warn("reload: a new user or group takes effect at the next start");
	if (cfg->workers != s->cfg->workers)
		log_warn("reload: a new number of workers takes effect at the next start");
	/* The swap: pointers only, with the workers stopped so that they see
	 * the old pair or the new, never half; their sockets stay open, so
	 * queries wait in the kernel for the moment it takes. */
	t[4] = now_ms();
	workers_stop(s->workers);
	t[5] = now_ms();
	apply_settings(s, cfg);
	apply_rate_limit(s, s->cfg, cfg);
	/* New servers or settings may answer what failed: ask again. */
	failcache_reset(s->fails, cfg->stale_recheck * 1000u);
	struct policy *p = pair->policy;
	pair->cfg = s->cfg;            /* the replaced pair: the reload thread frees it */
	pair->policy = s->policy;
	s->cfg = cfg;
	s->policy = p;
	s->policy_gen++;
	workers_start(s->workers);
	t[6] = now_ms();
	discovery_configure(s->disc, cfg);
	control_configure(s->ctl, cfg);
	log_notice("configuration reloaded: %zu rules, %zu upstream servers",
		   policy_rule_count(p), upstream_count(s->up));
	policy_each_shared(p, warn_shared_log, NULL);
	notify_ready(status_line(s, status, sizeof(status)));
	t[7] = now_ms();
	log_info("reload: %.2f ms on the loop (names %.2f, listeners %.2f, upstreams %.2f, "
		 "nft/metrics/cache %.2f, workers stop %.2f, swap %.2f, rest %.2f)", t[7] - t[0],
		 t[1] - t[0], t[2] - t[1], t[3] - t[2], t[4] - t[3], t[5] - t[4], t[6] - t[5],
		 t[7] - t[6]);
	return 0;
failed:
	log_err("reload failed, the running configuration stays: %s", err);
	snprintf(status, sizeof(status), "reload failed, the running configuration stays: %s", err);
	notify_ready(status);
	return -1;
}

static void sighup_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct server *s = w->data;
	(void)loop;
	(void)revents;

	log_notice("SIGHUP: reloading %s", s->cfg->path);
	reload_request(s->reloads, s->cfg->path, NULL);
}

static void sigterm_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)revents;
	log_notice("signal %d: shutting down", w->signum);
	ev_break(loop, EVBREAK_ALL);
}

static void report_discovery(void *arg, const struct discovery_info *i)
{
	char when[64] = "never", list[1024] = "";
	size_t n = 0;
	(void)arg;

	if (i->last_success)
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime(&i->last_success));
	for (char *const *e = i->endpoints; e && *e && n < sizeof(list); e++)
		n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%s", n ? "," : "", *e);
	log_notice("discovery %s source=%s last_success=%s next_refresh=%.0fs last_error=\"%s\" "
		   "endpoints=%s", i->login, i->source, when, i->next_refresh, i->last_error, list);
}

static void sigusr1_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct server *s = w->data;
	(void)loop;
	(void)revents;
	struct stats total;
	workers_total(s, &total);
	stats_log(&total);
	discovery_each(s->disc, report_discovery, NULL);
	log_notice("cache entries=%zu bytes=%zu inflight=%zu tcp_connections=%u",
		   cache_entries(s->cache), cache_bytes(s->cache), upstream_inflight(s->up),
		   s->tcp_conns);
}

/**
 * One server list (`upstreams`, or a forward zone's) would start with no
 * server at all: every file: list is empty or names only our own
 * listeners.  Said as file:line of its first entry, with what each entry
 * gave.
 * @param zone NULL for `upstreams`
 * @return 0, or -1 after printing the error
 */
static int check_upstream_list(const struct config *cfg, const struct cfg_upstream *list, size_t n_list,
			       const char *zone)
{
	size_t usable = 0;
	char buf[64];

	for (size_t i = 0; i < n_list; i++) {
		struct cfg_addr *a = NULL;
		int n = 1;
		if (list[i].file)
			n = upstream_read_resolv(list[i].file, &a);
		for (int j = 0; j < n; j++)
			usable += !upstream_is_self(cfg->listen, cfg->n_listen, a ? &a[j] : &list[i].addr);
		free(a);
	}
	if (usable || n_list == 0)
		return 0;
	fprintf(stderr, "<3>%s:%d: no usable upstream server%s%s: ", cfg->path, list[0].line,
		zone ? " for forward zone " : "", zone ? zone : "");
	for (size_t i = 0; i < n_list; i++) {
		if (list[i].file) {
			struct cfg_addr *a = NULL;
			int n = upstream_read_resolv(list[i].file, &a);
			free(a);
			fprintf(stderr, "%sfile:%s %s", i ? "; " : "", list[i].file,
				n < 0 ? "cannot be read" : n == 0 ? "names no nameserver"
				: "names only this daemon's own listeners");
		} else {
			address_str((const struct sockaddr *)&list[i].addr.ss, buf, sizeof(buf));
			fprintf(stderr, "%s%s is this daemon's own listener", i ? "; " : "", buf);
		}
	}
	fprintf(stderr, ". Name the real DNS servers (with systemd-resolved: "
		"\"file:/run/systemd/resolve/resolv.conf\"); see acrdnsd(8), THE HOST'S RESOLVER\n");
	return -1;
}

/** `upstreams` and every forward zone each have a usable server.  @return 0, or -1 */
static int check_upstreams(const struct config *cfg)
{
	int rc = check_upstream_list(cfg, cfg->upstreams, cfg->n_upstreams, NULL);

	for (size_t i = 0; i < cfg->n_forward; i++)
		if (check_upstream_list(cfg, cfg->forward[i].upstreams, cfg->forward[i].n_upstreams,
					cfg->forward[i].name) < 0)
			rc = -1;
	return rc;
}

static int explain(const struct config *cfg, const struct policy *p, const char *text)
{
	uint8_t name[WIRE_NAME_MAX + 1];
	char rule[400], shown[WIRE_NAME_STRLEN];
	struct policy_decision d;
	int len = wire_name_from_str(text, name);

	if (len < 0) {
		fprintf(stderr, "acrdnsd: '%s' is not a domain name\n", text);
		return 2;
	}
	policy_decide(p, name, (size_t)len, &d);
	policy_describe(p, &d, rule, sizeof(rule));
	wire_name_str(name, shown);
	const char *what = d.verdict == VERDICT_DENY ? "denied: answered without asking upstream"
			   : d.verdict == VERDICT_AUDIT ? "audit mode: would be denied; forwarded, "
							  "answered, logged and counted"
			   : d.verdict == VERDICT_LOCAL ? "answered locally"
			   : d.verdict == VERDICT_ALLOW ? "allowed: forwarded, answer trusted whole"
			   : "forwarded: CNAME targets checked against deny rules";
	printf("%s %s\n  %s\n  rule: %s\n", shown, policy_verdict_name(d.verdict), what, rule);
	if (d.verdict == VERDICT_ALLOW || d.verdict == VERDICT_PASS || d.verdict == VERDICT_AUDIT) {
		const struct cfg_forward *f = config_forward_find(cfg, name, (size_t)len);
		printf("  upstreams: zone %s: ", f ? f->name : ".");
		if (f)
			printconf_upstreams(f->upstreams, f->n_upstreams);
		else
			printconf_upstreams(cfg->upstreams, cfg->n_upstreams);
		printf("\n");
	}
	return 0;
}

static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/** What the command line asked for. */
struct options {
	const char *path;          /* the configuration file */
	bool path_given;           /* -c: the file must exist, even for --print-nft */
	bool foreground, test, print_nft;
	const char *explain_name;  /* --explain NAME, or NULL */
};

/**
 * Read the command line into o.
 * @return -1 to go on, or the status to exit with (--version, --help, a bad option)
 */
static int parse_options(int argc, char **argv, struct options *o)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "test", no_argument, NULL, 't' },
		{ "explain", required_argument, NULL, 'e' },
		{ "print-nft", no_argument, NULL, 'N' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	*o = (struct options){ .path = CONFIG_DEFAULT_PATH };
	while ((c = getopt_long(argc, argv, "c:fte:Vh", opts, NULL)) != -1) {
		switch (c) {
		case 'c': o->path = optarg; o->path_given = true; break;
		case 'N': o->print_nft = true; break;
		case 'f': o->foreground = true; break;
		case 't': o->test = true; break;
		case 'e': o->explain_name = optarg; break;
		case 'V': printf("acrdnsd %s\n", PACKAGE_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	return -1;
}

/** --print-nft: an example ruleset for the configured sets.  @return the exit status */
static int print_nft(const struct options *o)
{
	struct config *pc = NULL;
	char err[1024];

	/* Before anything is configured, the defaults will do. */
	if (o->path_given || access(o->path, F_OK) == 0) {
		char *ap = realpath(o->path, NULL);
		pc = config_load(ap ? ap : o->path, err, sizeof(err));
		free(ap);
		if (!pc) {
			log_err("%s", err);
			return EX_CONFIG;
		}
	}
	struct cfg_nft defaults = { true, "inet", "acrdns", "allow4", "allow6", 300 };
	nft_print_ruleset(stdout, pc ? &pc->nft : &defaults);
	config_free(pc);
	curl_global_cleanup();
	return 0;
}

/**
 * Load the configuration and build its policy, with the endpoints that
 * earlier runs discovered and saved (allowed from the first query on).
 * @return 0, or the status to exit with after saying why
 */
static int load(struct server *s, const char *path, struct config **cfgp, struct policy **policyp)
{
	char err[1024];

	/* Absolute, so that a reload after going to the background (which
	 * changes to /) reads the same file and the same relative rule paths. */
	char *abs_path = realpath(path, NULL);
	struct config *cfg = config_load(abs_path ? abs_path : path, err, sizeof(err));
	free(abs_path);
	if (!cfg) {
		log_err("%s", err);
		return EX_CONFIG;
	}
	/* Endpoints saved by earlier runs are allowed from the first query on. */
	if (!(s->disc = discovery_new(s, swap_registry_names))) {
		fprintf(stderr, "acrdnsd: out of memory\n");
		return 1;
	}
	struct policy *policy = policy_new(cfg, discovery_endpoints(s->disc, cfg), err, sizeof(err));
	if (!policy) {
		log_err("%s", err);
		discovery_free(s->disc);
		config_free(cfg);
		return EX_CONFIG;
	}
	*cfgp = cfg;
	*policyp = policy;
	return 0;
}

/** -t and --explain: print, check, free everything.  @return the exit status */
static int check_mode(struct server *s, struct config *cfg, struct policy *policy,
		      const struct options *o)
{
	int rc = o->test ? (printconf_summary(cfg, policy), check_upstreams(cfg) < 0 ? EX_CONFIG : 0)
			 : explain(cfg, policy, o->explain_name);
	policy_free(policy);
	discovery_free(s->disc);
	config_free(cfg);
	curl_global_cleanup();
	return rc;
}

/**
 * The state the loop works on: settings, rate limits, the audit table, the
 * cache, upstream and loop detection.  @return 0, or -1 after logging why
 */
static int make_state(struct server *s, struct config *cfg, struct policy *policy)
{
	s->loop = ev_default_loop(EVFLAG_AUTO);
	s->cfg = cfg;
	s->policy = policy;
	s->policy_gen = 1;
	apply_settings(s, cfg);
	apply_rate_limit(s, NULL, cfg);
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit();
	/* Before the workers: they count audited cache hits in it too. */
	if (!(s->audit = audit_new(0)))
		log_err("audit: out of memory; acrdnsctl audit will have nothing to show");
	if (!(s->cache = cache_new(cfg->cache_size)) || !(s->up = upstream_new(s)) ||
	    !(s->loopdetect = loopdetect_new(s, drop_loop, s)) ||
	    !(s->fails = failcache_new(FAILCACHE_ENTRIES, cfg->stale_recheck * 1000u))) {
		log_err("out of memory at start-up");
		return -1;
	}
	/* Every new upstream list (start, reload, a file: list changed) is checked for loops. */
	upstream_on_rebuild(s->up, check_loops, s);
	return 0;
}

/**
 * Open every socket while still privileged: the listeners (configured or
 * passed by socket activation), upstream, nftables, metrics, the control
 * socket (with the reloader it asks) and the workers' sockets.
 * @return 0, or -1 after logging why
 */
static int open_sockets(struct server *s, const struct config *cfg)
{
	char err[1024];

	unsigned n_workers = cfg->workers ? cfg->workers : workers_default();
	listener_set_reuseport(n_workers > 1);
	s->activated = listener_inherit() > 0;
	if (reconcile_listeners(s, cfg, err, sizeof(err)) < 0)
		return -1;
	if (s->activated) {
		struct listener *rest = listener_adopt_inherited(s, query_listener_handle, s);
		while (rest) {
			struct listener *l = rest;
			rest = l->next;
			l->next = s->listeners;
			s->listeners = l;
			listener_start(l);
		}
	}
	if (!s->listeners) {
		log_err("no address to listen on: set 'listen' or pass sockets by socket activation");
		return -1;
	}
	if (upstream_configure(s->up, cfg, err, sizeof(err)) < 0 ||
	    nft_configure(s, cfg, err, sizeof(err)) < 0) {
		log_err("%s", err);
		return -1;
	}
	if (metrics_configure(s, cfg) < 0)
		return -1;
	if (!(s->reloads = reload_new(s->loop, reload_apply, s))) {
		log_err("out of memory at start-up");
		return -1;
	}
	s->started = ev_now(s->loop);
	if ((s->ctl = control_new(s)))
		control_configure(s->ctl, cfg);
	/* The workers' sockets too are bound while privileged; their threads start last. */
	if ((s->workers = workers_new(s, n_workers)))
		workers_open(s->workers);
	return 0;
}

/**
 * Become the configured user once the sockets are open, and go to the
 * background unless told to stay.  @return 0, or -1 after logging why
 */
static int drop_privileges(struct server *s, const struct config *cfg, bool foreground)
{
	char err[1024];

	if (privs_drop(cfg, control_path(s->ctl), err, sizeof(err)) < 0) {
		log_err("%s", err);
		return -1;
	}
	for (size_t i = 0; i < cfg->n_access; i++)
		if (cfg->access[i].prefix == 0)
			log_warn("access allows every address (%s/0): an open resolver can be abused",
				 cfg->access[i].family == AF_INET ? "0.0.0.0" : "::");
	if (!foreground && daemon(0, 1) < 0) {
		log_err("cannot go to the background: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/** Signals, discovery, the workers' threads, readiness; then the loop until SIGTERM. */
static void run(struct server *s)
{
	const struct config *cfg = s->cfg;
	ev_signal hup, term, intr, usr1;

	ev_signal_init(&hup, sighup_cb, SIGHUP);
	ev_signal_init(&term, sigterm_cb, SIGTERM);
	ev_signal_init(&intr, sigterm_cb, SIGINT);
	ev_signal_init(&usr1, sigusr1_cb, SIGUSR1);
	hup.data = term.data = intr.data = usr1.data = s;
	ev_signal_start(s->loop, &hup);
	ev_signal_start(s->loop, &term);
	ev_signal_start(s->loop, &intr);
	ev_signal_start(s->loop, &usr1);
	discovery_configure(s->disc, cfg);
	/* One line in the journal per start; `acrdnsd -t` prints the whole policy. */
	char status[256];
	log_notice("acrdnsd %s started, %s", PACKAGE_VERSION, status_line(s, status, sizeof(status)));
	policy_each_shared(s->policy, warn_shared_log, NULL);
	if (cfg->audit)
		log_warn("audit mode: nothing is denied; names the policy would deny are forwarded, "
			 "logged and counted: acrdnsctl audit lists them");
	/* Threads last: after the fork into the background and the privilege drop. */
	workers_start(s->workers);
	notify_ready(status);
	notify_watchdog_start(s->loop);

	listener_batch_start(s->loop);
	if (!(s->stall = loopstall_new(s->loop)))
		log_err("loop stall watch: out of memory; acrdns_loop_stall_seconds stays 0");
	ev_run(s->loop, 0);
	loopstall_free(s->stall);
	s->stall = NULL;
	listener_batch_stop(s->loop);
}

/** Log the totals and free everything, the workers first. */
static void shut_down(struct server *s)
{
	struct stats total_at_exit;

	notify_stopping();
	notify_watchdog_stop(s->loop);
	workers_stop(s->workers);   /* answers what they handed over first */
	workers_total(s, &total_at_exit);
	stats_log(&total_at_exit);
	workers_free(s->workers);
	s->workers = NULL;
	nft_free(s);
	metrics_free(s);
	control_free(s->ctl);
	reload_free(s->reloads);    /* after control: its connections forget their reloads */
	discovery_free(s->disc);
	loopdetect_free(s->loopdetect);
	upstream_free(s->up);
	listener_close_all_tcp(s);
	for (struct listener *l = s->listeners, *n; l; l = n) {
		n = l->next;
		listener_close(l);
	}
	cache_free(s->cache);
	audit_free(s->audit);
	failcache_free(s->fails);
	ratelimit_free(s->rl);
	policy_free(s->policy);
	config_free(s->cfg);
	ev_loop_destroy(s->loop);
	curl_global_cleanup();
	log_notice("acrdnsd stopped");
}

int main(int argc, char **argv)
{
	static struct server srv;
	struct server *s = &srv;
	struct options o;
	struct config *cfg;
	struct policy *policy;
	int rc;

	if ((rc = parse_options(argc, argv, &o)) >= 0)
		return rc;
	hash_init();
	/* Before anything else runs: libcurl's global set-up is not thread-safe. */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "acrdnsd: cannot initialise libcurl\n");
		return 1;
	}
	if (o.print_nft)
		return print_nft(&o);
	if ((rc = load(s, o.path, &cfg, &policy)) != 0)
		return rc;
	if (o.test || o.explain_name)
		return check_mode(s, cfg, policy, &o);
	if (make_state(s, cfg, policy) < 0 || open_sockets(s, cfg) < 0 ||
	    drop_privileges(s, cfg, o.foreground) < 0)
		return 1;
	run(s);
	shut_down(s);
	return 0;
}
