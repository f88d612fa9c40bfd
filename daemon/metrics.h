/**
 * \file metrics.h
 * Prometheus text exposition of the daemon's counters, over the control
 * socket and, optionally, over HTTP (libmicrohttpd, on our event loop).
 */
#ifndef ACRDNS_METRICS_H
#define ACRDNS_METRICS_H

#include "config.h"

struct server;

/** @return the whole exposition, malloc'd, or NULL when out of memory. */
char *metrics_render(struct server *s);

/**
 * Open, move or close the HTTP listener to match cfg->metrics_listen.  On
 * failure the running listener stays.  @return 0, or -1 with the reason logged
 */
int metrics_configure(struct server *s, const struct config *cfg);

/** Close the HTTP listener. */
void metrics_free(struct server *s);

#endif
