/* Shared set-up for the fuzz targets: a server with a real policy and
 * cache but no upstream server and no socket, so a fuzzed query runs the
 * whole decision path and nothing leaves the process. */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "failcache.h"
#include "hash.h"
#include "listener.h"
#include "log.h"
#include "policy.h"
#include "server.h"
#include "upstream.h"

static struct server fuzz_srv;

static const char fuzz_conf[] =
	"listen = [ \"127.0.0.1:53\" ];\n"
	"access = [ \"127.0.0.0/8\" ];\n"
	"upstreams = [ \"file:/dev/null\" ];\n"   /* no server: misses get SERVFAIL at once */
	"mode = \"filter\";\n"
	"deny = [ \"*.blob.core.windows.net\", \"*.azurecr.io\", \"exact.example\" ];\n"
	"allow = [ \"*.allowed.example\" ];\n"
	"local = ( { name = \"mirror.lab\"; addresses = [ \"10.0.0.5\", \"fd00::5\" ]; } );\n"
	"registries = ( { login_server = \"contoso.azurecr.io\";\n"
	"  data_endpoints = [ \"contoso.eastus.data.azurecr.io\" ]; } );\n"
	"log = { level = \"err\"; queries = \"all\"; };\n";

static void fuzz_server_init(void)
{
	char path[] = "/tmp/acrdns-fuzz-XXXXXX";
	char err[1024];
	int fd = mkstemp(path);

	if (fd < 0 || write(fd, fuzz_conf, sizeof(fuzz_conf) - 1) != (ssize_t)(sizeof(fuzz_conf) - 1))
		abort();
	close(fd);
	hash_init();
	log_set_level(LOG_LVL_ERR);
	fuzz_srv.loop = ev_default_loop(0);
	fuzz_srv.cfg = config_load(path, err, sizeof(err));
	unlink(path);
	if (!fuzz_srv.cfg) {
		fprintf(stderr, "%s\n", err);
		abort();
	}
	fuzz_srv.policy = policy_new(fuzz_srv.cfg, NULL, err, sizeof(err));
	fuzz_srv.cache = cache_new(1 << 20);
	fuzz_srv.up = upstream_new(&fuzz_srv);
	/* As the daemon makes it: every miss asks the failure memory first. */
	fuzz_srv.fails = failcache_new(64, fuzz_srv.cfg->stale_recheck * 1000u);
	if (!fuzz_srv.policy || !fuzz_srv.cache || !fuzz_srv.up || !fuzz_srv.fails ||
	    upstream_configure(fuzz_srv.up, fuzz_srv.cfg, err, sizeof(err)) < 0)
		abort();
	fuzz_srv.policy_gen = 1;
	fuzz_srv.ttl = (struct cache_ttl){ 0, 86400, 300, 86400 };
	/* The query log would flood the fuzzer's output. */
	fuzz_srv.cfg->log_queries = QLOG_NONE;
}

#endif
