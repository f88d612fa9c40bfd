/**
 * \file control.h
 * The control socket: a UNIX stream socket (mode 0660) on which acrdnsctl
 * asks for status, counters, endpoints, a rule explanation, a cache flush
 * or dump, or a reload.  One request line per connection, answered in
 * text or, with --json, in JSON, then closed.
 */
#ifndef ACRDNS_CONTROL_H
#define ACRDNS_CONTROL_H

#include <stddef.h>

#include "config.h"

struct server;
struct control;

/** @return the control state (nothing open yet), or NULL when out of memory. */
struct control *control_new(struct server *s);

/**
 * Listen on cfg->control_socket, or keep listening when it did not change.
 * A socket that cannot be opened is logged; DNS goes on without it.
 */
void control_configure(struct control *c, const struct config *cfg);

/** Close the socket, remove its path, drop open connections, free. */
void control_free(struct control *c);

/** @return the socket's path, or NULL when it is not open. */
const char *control_path(const struct control *c);

/**
 * Answer one request line (exposed for tests and fuzzing).
 * @return the answer, malloc'd; the caller frees it
 */
char *control_answer(struct server *s, const char *request);

#endif
