/**
 * \file http.h
 * HTTP GET on the event loop, with libcurl's multi interface: no request
 * blocks DNS.  Used by ARM discovery (IMDS token, registry resource).
 */
#ifndef ACRDNS_HTTP_H
#define ACRDNS_HTTP_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>

struct http;
struct http_request;

/**
 * Called once per request.
 * @param status the HTTP status, or 0 when no response came
 * @param body the response body (NUL-terminated), or NULL
 * @param error why no response came, or NULL
 */
typedef void (*http_done_fn)(void *arg, long status, const char *body, size_t len,
			     const char *error);

/** @return a client on loop, or NULL when libcurl cannot be set up. */
struct http *http_new(struct ev_loop *loop);

/** Cancel every request (their callbacks are not called) and free. */
void http_free(struct http *h);

/**
 * Start a GET.
 * @param headers NULL-terminated "Name: value" strings, or NULL
 * @param no_proxy true to bypass any proxy from the environment (IMDS)
 * @param timeout seconds for the whole exchange
 * @return the request (for http_cancel), or NULL with done not called
 */
struct http_request *http_get(struct http *h, const char *url, const char *const *headers,
			      bool no_proxy, long timeout, http_done_fn done, void *arg);

/** Abandon a request; its callback is not called. */
void http_cancel(struct http_request *r);

#endif
