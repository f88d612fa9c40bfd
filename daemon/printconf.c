/**
 * \file printconf.c
 * What `acrdnsd -t` prints: the configuration as the daemon understood it
 * (listeners, upstreams, forward zones, rule files and counts, registries
 * with their endpoints and discovery, user, metrics, nftables, local
 * names), so that an operator sees before a reload what it would run.
 */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "address.h"
#include "printconf.h"
#include "regname.h"
#include "upstream.h"
#include "wire.h"
#include "worker.h"

static void warn_shared_print(void *arg, const char *warning)
{
	(void)arg;
	printf("warning: %s\n", warning);
}

void printconf_upstreams(const struct cfg_upstream *list, size_t n)
{
	char buf[64];

	for (size_t i = 0; i < n; i++) {
		if (list[i].file) {
			struct cfg_addr *a;
			int k = upstream_read_resolv(list[i].file, &a);
			printf("%sfile:%s (%d nameservers now)", i ? ", " : "", list[i].file, k < 0 ? 0 : k);
			free(a);
		} else {
			address_str((const struct sockaddr *)&list[i].addr.ss, buf, sizeof(buf));
			printf("%s%s", i ? ", " : "", buf);
		}
	}
}

/** How the daemon will serve: mode, listeners, upstreams and forward zones. */
static void print_network(const struct config *cfg)
{
	char buf[64];

	printf("mode: %s, denied names get %s\n", cfg->mode == MODE_ALLOWLIST ? "allowlist" : "filter",
	       (const char *[]){ "NXDOMAIN", "NODATA", "REFUSED" }[cfg->deny_response]);
	if (cfg->audit)
		printf("audit: on: nothing is denied; names the policy would deny are forwarded, "
		       "logged and counted (acrdnsctl audit)\n");
	for (size_t i = 0; i < cfg->n_listen; i++) {
		address_str((const struct sockaddr *)&cfg->listen[i].ss, buf, sizeof(buf));
		printf("listen: %s (udp, tcp)\n", buf);
	}
	for (size_t i = 0; i < cfg->n_upstreams; i++) {
		printf("upstream: ");
		printconf_upstreams(&cfg->upstreams[i], 1);
		printf("\n");
	}
	for (size_t i = 0; i < cfg->n_forward; i++) {
		printf("forward: %s and below to ", cfg->forward[i].name);
		printconf_upstreams(cfg->forward[i].upstreams, cfg->forward[i].n_upstreams);
		printf("\n");
	}
}

/** The rule files and their counts; a warning for each that allows a shared registry. */
static void print_rules(const struct config *cfg, const struct policy *p)
{
	for (size_t i = 0; i < p->n_files; i++)
		printf("rules: %s: %zu rules\n", p->files[i], p->file_counts[i]);
	if (cfg->n_allow || cfg->n_deny)
		printf("rules: inline: %zu allow, %zu deny\n", cfg->n_allow, cfg->n_deny);
	printf("rules: %zu in all\n", policy_rule_count(p));
	policy_each_shared(p, warn_shared_print, NULL);
}

/** One registry: its discovery, its endpoints, its last success. */
static void print_registry(const struct config *cfg, const struct policy_registry *r,
			   const struct cfg_discovery *d)
{
	static const char *const sources[] = { "static", "file", "command", "arm" };

	printf("registry: %s (discovery: %s%s%s", r->login_server, sources[d->source],
	       d->source == SOURCE_FILE ? " " : "", d->source == SOURCE_FILE ? d->path : "");
	if (d->source != SOURCE_STATIC)
		printf(", every %u s", d->interval);
	char region[64];
	if (regname_ecr_region(r->login_server, region, sizeof(region)))
		printf("), Amazon ECR in %s: its API and its region's layer bucket\n", region);
	else
		printf("), %zu data endpoints (configured and saved in %s)\n", r->n_endpoints,
		       cfg->state_dir);
	for (size_t j = 0; j < r->n_endpoints; j++)
		printf("  endpoint: %s\n", r->endpoints[j]);
	if (d->source != SOURCE_STATIC) {
		/* This process has not run the source: the saved state tells the
		 * last success; the running daemon reports the rest on SIGUSR1. */
		char state[4096], when[64] = "never";
		struct stat st;
		snprintf(state, sizeof(state), "%s/%s.json", cfg->state_dir, r->login_server);
		if (stat(state, &st) == 0)
			strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime(&st.st_mtime));
		printf("  last success: %s (%s); last error and next refresh: SIGUSR1 to the "
		       "running daemon\n", when, state);
	}
	if (r->n_endpoints == 0)
		printf("  warning: no dedicated data endpoints: pulls need *.blob.core.windows.net, "
		       "which stays denied; enable them with "
		       "'az acr update --name NAME --data-endpoint-enabled'\n");
}

/** The process: workers, user, metrics, nftables; then local names. */
static void print_process(const struct config *cfg)
{
	char buf[64];

	printf("workers: %u event loops%s\n", cfg->workers ? cfg->workers : workers_default(),
	       cfg->workers ? "" : " (workers = 0: one per CPU)");
	if (strcmp(cfg->user, "root") == 0)
		printf("user: root (kept: the configuration says so)\n");
	else
		printf("user: %s%s, group: %s (once the sockets are open, when started as root)\n",
		       cfg->user, cfg->user_set ? "" : " (default; 'nobody' when it does not exist)",
		       cfg->group ? cfg->group : "the user's");
	if (cfg->metrics_listen.len) {
		address_str((const struct sockaddr *)&cfg->metrics_listen.ss, buf, sizeof(buf));
		printf("metrics: http://%s/metrics\n", buf);
	}
	if (cfg->nft.enabled)
		printf("nftables: %s %s, sets %s%s%s, timeout TTL + %u s\n", cfg->nft.family, cfg->nft.table,
		       cfg->nft.set4, cfg->nft.set4[0] && cfg->nft.set6[0] ? " and " : "", cfg->nft.set6,
		       cfg->nft.grace);
	for (size_t i = 0; i < cfg->n_local; i++) {
		char name[WIRE_NAME_STRLEN];
		wire_name_str(cfg->local[i].name, name);
		printf("local: %s (%zu IPv4, %zu IPv6, ttl %u)\n", name, cfg->local[i].n4,
		       cfg->local[i].n6, cfg->local[i].ttl);
	}
}

void printconf_summary(const struct config *cfg, const struct policy *p)
{
	printf("configuration %s is valid\n", cfg->path);
	print_network(cfg);
	print_rules(cfg, p);
	for (size_t i = 0; i < p->n_registries; i++)
		print_registry(cfg, &p->registries[i], &cfg->registries[i].discovery);
	print_process(cfg);
}
