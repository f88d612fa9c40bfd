/**
 * \file notify.c
 * sd_notify(3) and sd_listen_fds(3) from libsystemd.  The watchdog timer
 * runs on the main loop, so a loop that stops turning stops the pings and
 * systemd restarts the daemon.
 */
#include "autoconf.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "log.h"
#include "notify.h"

#ifdef HAVE_SYSTEMD

static ev_timer watchdog;

void notify_ready(const char *status)
{
	sd_notifyf(0, "READY=1\nSTATUS=%s\nMAINPID=%ld", status, (long)getpid());
}

void notify_reloading(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64,
		   (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000);
}

void notify_status(const char *status)
{
	sd_notifyf(0, "STATUS=%s", status);
}

void notify_stopping(void)
{
	sd_notify(0, "STOPPING=1");
}

static void watchdog_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	sd_notify(0, "WATCHDOG=1");
}

void notify_watchdog_start(struct ev_loop *loop)
{
	uint64_t usec;

	if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
		return;
	double every = (double)usec / 2e6;
	ev_timer_init(&watchdog, watchdog_cb, every, every);
	ev_timer_start(loop, &watchdog);
	sd_notify(0, "WATCHDOG=1");
	log_info("systemd watchdog: a ping every %.1f s", every);
}

void notify_watchdog_stop(struct ev_loop *loop)
{
	ev_timer_stop(loop, &watchdog);
}

int notify_listen_fds(int *fds, int max)
{
	int n = sd_listen_fds(1);

	if (n < 0) {
		log_err("socket activation: %s", strerror(-n));
		return 0;
	}
	if (n > max) {
		log_warn("socket activation: %d sockets passed, using the first %d", n, max);
		n = max;
	}
	for (int i = 0; i < n; i++)
		fds[i] = SD_LISTEN_FDS_START + i;
	return n;
}

#else

void notify_ready(const char *status) { (void)status; }
void notify_reloading(void) {}
void notify_status(const char *status) { (void)status; }
void notify_stopping(void) {}
void notify_watchdog_start(struct ev_loop *loop) { (void)loop; }
void notify_watchdog_stop(struct ev_loop *loop) { (void)loop; }

int notify_listen_fds(int *fds, int max)
{
	(void)fds;
	(void)max;
	return 0;
}

#endif
