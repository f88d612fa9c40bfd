/**
 * \file acrdnsctl.c
 * The control tool: sends one request line to acrdnsd's control socket and
 * prints the answer.  Exit status 1 when the daemon answered with an error,
 * 2 for bad arguments, 3 when the daemon cannot be reached.
 */
#include "autoconf.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define DEFAULT_SOCKET RUNSTATEDIR "/acrdns/control.sock"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: acrdnsctl [-s SOCKET] [--json] COMMAND [ARGUMENT]\n"
		"commands:\n"
		"  status          version, uptime, configuration, cache and connections\n"
		"  stats           every counter\n"
		"  endpoints       each registry's endpoints and discovery state\n"
		"  explain NAME    the verdict for NAME and the rule that decides it\n"
		"  flush [NAME]    drop NAME (every type) or everything from the cache\n"
		"  dump-cache      every cached answer with its remaining TTL\n"
		"  reload          re-read the configuration (as SIGHUP), reporting errors\n"
		"  metrics         every counter in the Prometheus text format\n"
		"  nft             an example nftables ruleset for the configured sets\n"
		"  firewall        each registry's endpoint names, for name-based firewalls\n"
		"  audit [reset]   names audit mode would have denied, busiest first; reset forgets them\n"
		"options:\n"
		"  -s, --socket PATH   control socket (default %s)\n"
		"  -j, --json          answer in JSON\n", DEFAULT_SOCKET);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = DEFAULT_SOCKET;
	bool json = false;
	char req[1100];
	size_t n = 0;
	int c;

	while ((c = getopt_long(argc, argv, "s:jh", opts, NULL)) != -1) {
		switch (c) {
		case 's': path = optarg; break;
		case 'j': json = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind >= argc || argc - optind > 2) {
		usage(stderr);
		return 2;
	}
	for (int i = optind; i < argc; i++) {
		if (strchr(argv[i], '\n') || strlen(argv[i]) > 512) {
			fprintf(stderr, "acrdnsctl: argument too long or holds a newline\n");
			return 2;
		}
		n += (size_t)snprintf(req + n, sizeof(req) - n, "%s%s", i > optind ? " " : "", argv[i]);
	}
	n += (size_t)snprintf(req + n, sizeof(req) - n, "%s\n", json ? " --json" : "");

	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "acrdnsctl: socket path too long: %s\n", path);
		return 2;
	}
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "acrdnsctl: cannot reach acrdnsd at %s: %s\n", path, strerror(errno));
		return 3;
	}
	if (send(fd, req, n, MSG_NOSIGNAL) != (ssize_t)n) {
		fprintf(stderr, "acrdnsctl: %s: %s\n", path, strerror(errno));
		return 3;
	}
	char buf[65536];
	bool first = true, error = false;
	struct pollfd pfd = { fd, POLLIN, 0 };
	for (;;) {
		/* A reload can take a moment; a daemon that hangs must not hang us. */
		if (poll(&pfd, 1, 30000) <= 0) {
			fprintf(stderr, "acrdnsctl: no answer from %s\n", path);
			return 3;
		}
		ssize_t r = recv(fd, buf, sizeof(buf), 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		if (first) {
			/* The daemon's errors: "error: ..." or, in JSON, { "error": ... }. */
			static const char json_error[] = "{\n  \"error\":";
			error = (r >= 6 && strncmp(buf, "error:", 6) == 0) ||
				((size_t)r >= sizeof(json_error) - 1 &&
				 strncmp(buf, json_error, sizeof(json_error) - 1) == 0);
			first = false;
		}
		fwrite(buf, 1, (size_t)r, error ? stderr : stdout);
	}
	close(fd);
	if (first) {
		fprintf(stderr, "acrdnsctl: the daemon closed the connection without an answer\n");
		return 3;
	}
	return error ? 1 : 0;
}
