/**
 * \file config.h
 * The configuration file (libconfig syntax) read into acrdns' own
 * structure and validated.  A load builds a complete new struct config;
 * the caller swaps it in only when the load succeeded, so a bad reload
 * leaves the running configuration untouched.
 */
#ifndef ACRDNS_CONFIG_H
#define ACRDNS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "address.h"
#include "log.h"

#define CONFIG_DEFAULT_PATH SYSCONFDIR "/acrdns/acrdnsd.conf"

/** A string with the line it came from, for messages that point at it. */
struct cfg_str {
	char *s;
	int line;
};

struct cfg_upstream {
	struct cfg_addr addr;  /**< unused when file is set */
	char *file;            /**< "file:PATH": nameservers of a resolv.conf */
	int line;
};

/** forward = ( { zone; upstreams; } ): a zone and the servers that answer for it. */
struct cfg_forward {
	uint8_t zone[256];     /**< lowercase wire name */
	int zone_len;
	char *name;            /**< as shown: "privatelink.azurecr.io", no trailing dot */
	struct cfg_upstream *upstreams;
	size_t n_upstreams;
	int line;
};

struct cfg_local {
	uint8_t name[256];
	int name_len;
	uint8_t (*v4)[4];
	size_t n4;
	uint8_t (*v6)[16];
	size_t n6;
	uint32_t ttl;
	int line;
};

enum cfg_source { SOURCE_STATIC, SOURCE_FILE, SOURCE_COMMAND, SOURCE_ARM };

struct cfg_discovery {
	enum cfg_source source;
	char *path;
	char **command;        /**< NULL-terminated argv */
	unsigned interval;     /**< seconds */
	unsigned timeout;      /**< seconds, command and arm */
	char *resource_id;
	char *arm_endpoint;
	char *imds_endpoint;
	char *client_id;
	char *api_version;     /**< ARM api-version to ask for; NULL: newest first, falling back */
};

struct cfg_registry {
	struct cfg_str login_server;
	struct cfg_str *data_endpoints;
	size_t n_data_endpoints;
	struct cfg_discovery discovery;
	int line;
};

enum cfg_mode { MODE_ALLOWLIST, MODE_FILTER };
enum cfg_deny_response { DENY_NXDOMAIN, DENY_NODATA, DENY_REFUSED };
enum cfg_query_log { QLOG_NONE, QLOG_DENIED, QLOG_ALL };

/** nftables sets that receive the addresses of allowed answers. */
struct cfg_nft {
	bool enabled;
	char family[8];               /**< ip, ip6, inet, ... */
	char table[64];
	char set4[64], set6[64];      /**< "": no set for that family */
	uint32_t grace;               /**< seconds added to each address' TTL */
};

struct config {
	char *path;
	char *dir;                    /**< for relative rule paths */
	struct cfg_addr *listen;
	size_t n_listen;
	bool listen_set;              /**< given in the file, not the loopback default */
	struct cfg_net *access;
	size_t n_access;
	struct cfg_upstream *upstreams;
	size_t n_upstreams;
	struct cfg_forward *forward;  /**< per-zone upstreams, in file order */
	size_t n_forward;
	enum cfg_mode mode;
	bool audit;                   /**< roll-out: deny nothing, log and count what would be */
	enum cfg_deny_response deny_response;
	uint32_t deny_ttl;
	struct cfg_str *rules;
	size_t n_rules;
	struct cfg_str *allow;
	size_t n_allow;
	struct cfg_str *deny;
	size_t n_deny;
	struct cfg_local *local;
	size_t n_local;
	struct cfg_registry *registries;
	size_t n_registries;
	uint64_t cache_size;
	uint32_t min_ttl, max_ttl, negative_ttl, stale_ttl;
	uint32_t stale_recheck;       /**< seconds: stale at once after a failed refresh (RFC 8767 4) */
	char *state_dir;
	char *control_socket;
	struct {
		uint32_t qps;               /**< 0: no limit */
		uint32_t burst;
		bool drop;                  /**< drop instead of REFUSED */
		struct cfg_net *exempt;
		size_t n_exempt;
	} rate_limit;
	uint32_t tcp_max_connections;
	uint32_t tcp_max_per_client;
	uint32_t tcp_idle_timeout;      /**< seconds */
	enum log_level log_level;
	enum cfg_query_log log_queries;
	enum log_format log_format;
	char *user;                   /**< who to run as once the sockets are open */
	bool user_set;                /**< named in the file, not the default */
	char *group;                  /**< NULL: the user's primary group */
	struct cfg_addr metrics_listen; /**< len 0: no HTTP metrics listener */
	struct cfg_nft nft;
	uint32_t workers;             /**< event loops (default 1); 0: one per CPU */
};

/**
 * Read and validate a configuration file.
 * @param err receives "file:line: message" for the first error
 * @return a new configuration, or NULL with err set
 */
struct config *config_load(const char *path, char *err, size_t errlen);

/** Free a configuration from config_load; NULL is allowed. */
void config_free(struct config *cfg);

/**
 * The forward zone a name goes to: the most specific zone that holds it,
 * matched label by label on wire names.
 * @param name lowercase or not; an uncompressed wire name of len bytes
 * @return the zone, or NULL: the name goes to `upstreams`
 */
const struct cfg_forward *config_forward_find(const struct config *cfg, const uint8_t *name, size_t len);

/** Names of the configuration keys, for checking that the manual has them all. */
extern const char *const config_keys[];

#endif
