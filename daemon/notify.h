/**
 * \file notify.h
 * The service manager's side: readiness, reload and status messages
 * (sd_notify), the watchdog, and sockets passed by socket activation.
 * Without libsystemd, or outside systemd, every call does nothing.
 */
#ifndef ACRDNS_NOTIFY_H
#define ACRDNS_NOTIFY_H

#include <ev.h>

/** Tell the manager we serve; status is the one-line STATUS= summary. */
void notify_ready(const char *status);

/** A reload starts (RELOADING=1 with the monotonic time). */
void notify_reloading(void);

/** Replace the STATUS= line. */
void notify_status(const char *status);

/** Shutdown starts. */
void notify_stopping(void);

/** Ping the watchdog from loop at half its interval, when the manager asks for one. */
void notify_watchdog_start(struct ev_loop *loop);
void notify_watchdog_stop(struct ev_loop *loop);

/**
 * Take the sockets passed by socket activation (LISTEN_FDS), once.
 * @param fds receives up to max descriptors
 * @return their number (0 without activation)
 */
int notify_listen_fds(int *fds, int max);

#endif
