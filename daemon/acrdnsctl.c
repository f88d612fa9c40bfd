/**
 * \file acrdnsctl.c
 * The control tool: sends one request line to acrdnsd's control socket and
 * prints the answer.  Exit status 1 when the daemon answered with an error,
 * 2 for bad arguments, 3 when the daemon cannot be reached.  wait-ready
 * asks `ready` until the daemon is ready (0) or the time is up (1).
 */
#include "autoconf.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
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
		"  ready           whether acrdnsd is ready, or what it waits for\n"
		"  wait-ready [--timeout SECONDS]\n"
		"                  wait until acrdnsd is ready (exit 0), or say why it is not\n"
		"                  when the time is up (exit 1; default 60 s)\n"
		"options:\n"
		"  -s, --socket PATH   control socket (default %s)\n"
		"  -j, --json          answer in JSON\n", DEFAULT_SOCKET);
}

/**
 * Ask the daemon one `ready` question.
 * @param why receives "ready", the daemon's reason, or why it cannot be reached
 * @return true when ready
 */
static bool ask_ready(const char *path, char *why, size_t len)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct pollfd pfd;
	size_t n = 0;
	int fd;

	strcpy(sa.sun_path, path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    send(fd, "ready\n", 6, MSG_NOSIGNAL) != 6) {
		snprintf(why, len, "cannot reach acrdnsd at %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return false;
	}
	pfd = (struct pollfd){ fd, POLLIN, 0 };
	while (n + 1 < len && poll(&pfd, 1, 5000) > 0) {
		ssize_t r = recv(fd, why + n, len - n - 1, 0);
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	why[n] = '\0';
	why[strcspn(why, "\n")] = '\0';
	if (n == 0)
		snprintf(why, len, "no answer from acrdnsd at %s", path);
	return strcmp(why, "ready") == 0;
}

/** Ask until ready or timeout seconds have passed (a daemon still starting is asked again). */
static int wait_ready(const char *path, double timeout)
{
	struct timespec now, start;
	char why[1024];

	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		if (ask_ready(path, why, sizeof(why))) {
			printf("ready\n");
			return 0;
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		double spent = (double)(now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9;
		if (spent >= timeout) {
			fprintf(stderr, "acrdnsctl: acrdnsd not ready after %.0f s: %s\n", timeout, why);
			return 1;
		}
		poll(NULL, 0, 100);
	}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ "timeout", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = DEFAULT_SOCKET;
	bool json = false;
	double timeout = -1;
	char req[1100];
	size_t n = 0;
	int c;

	while ((c = getopt_long(argc, argv, "s:jh", opts, NULL)) != -1) {
		char *end;
		switch (c) {
		case 's': path = optarg; break;
		case 't':
			timeout = strtod(optarg, &end);
			if (*end || end == optarg || timeout < 0 || timeout > 86400) {
				fprintf(stderr, "acrdnsctl: --timeout takes seconds, 0 to 86400: %s\n", optarg);
				return 2;
			}
			break;
		case 'j': json = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind >= argc || argc - optind > 2) {
		usage(stderr);
		return 2;
	}
	bool waiting = strcmp(argv[optind], "wait-ready") == 0;
	if (timeout >= 0 && !waiting) {
		fprintf(stderr, "acrdnsctl: --timeout goes with wait-ready only\n");
		return 2;
	}
	if (waiting) {
		if (argc - optind != 1) {
			usage(stderr);
			return 2;
		}
		if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
			fprintf(stderr, "acrdnsctl: socket path too long: %s\n", path);
			return 2;
		}
		return wait_ready(path, timeout >= 0 ? timeout : 60);
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
		int e = errno;
		fprintf(stderr, "acrdnsctl: cannot reach acrdnsd at %s: %s%s\n", path, strerror(e),
			e == EACCES ? " (the socket is for root and the daemon's group, acrdns: run "
				      "acrdnsctl as root, or add your user to that group)" : "");
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
