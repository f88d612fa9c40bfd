/**
 * \file health.h
 * Readiness: whether the daemon can do its job now, for GET /ready,
 * `acrdnsctl ready` and `acrdnsctl wait-ready`.  Liveness needs nothing
 * here: GET /health is answered by the event loop itself, so an answer
 * is the proof.
 */
#ifndef ACRDNS_HEALTH_H
#define ACRDNS_HEALTH_H

#include <stdbool.h>
#include <stddef.h>

struct server;

/**
 * Ready means: the policy is loaded, every registry has an endpoint set
 * (configured, saved by an earlier run, or discovered), the first loop
 * check is over, and at least one server of `upstreams` is usable.
 * Forward zones do not count: a zone without a usable server fails only
 * its own names, and `acrdnsctl status` shows it.
 * @param reason receives, when not ready, one line saying what is missing
 *        and what to do (no newline, no double quotes)
 * @return true when ready
 */
bool health_ready(struct server *s, char *reason, size_t len);

#endif
