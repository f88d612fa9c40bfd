/**
 * \file http.c
 * libcurl multi driven by libev, after curl's evhiperfifo example as done
 * right in https_dns_proxy: one ev_io per socket curl names, one ev_timer
 * for curl's timeout (in seconds as a double: integer division would turn
 * sub-second timeouts into 0), completions found with CURLINFO_PRIVATE.
 * A failed allocation fails the request, never the daemon.
 */
#include "autoconf.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "log.h"

#define BODY_MAX (1024 * 1024)

struct http {
	struct ev_loop *loop;
	CURLM *multi;
	ev_timer timer;
	int running;
	struct http_request *requests;
};

struct http_request {
	struct http_request *prev, *next;
	struct http *h;
	CURL *easy;
	struct curl_slist *headers;
	char *body;
	size_t len;
	bool too_long;
	char error[CURL_ERROR_SIZE];
	http_done_fn done;
	void *arg;
};

struct sock {
	ev_io io;
	struct http *h;
	curl_socket_t fd;
};

static void check_done(struct http *h)
{
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(h->multi, &left))) {
		if (m->msg != CURLMSG_DONE)
			continue;
		struct http_request *r = NULL;
		long status = 0;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
		curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &status);
		CURLcode rc = m->data.result;
		char err_buf[CURL_ERROR_SIZE];
		const char *err = NULL;
		if (r->too_long)
			err = "response larger than 1 MiB";
		else if (rc != CURLE_OK)
			err = r->error[0] ? r->error : curl_easy_strerror(rc);
		if (err) {
			/* r, and r->error with it, is freed before done() runs */
			snprintf(err_buf, sizeof(err_buf), "%s", err);
			err = err_buf;
		}
		http_done_fn done = r->done;
		void *arg = r->arg;
		char *body = r->body;
		size_t len = r->len;
		r->body = NULL;
		http_cancel(r);
		done(arg, err ? 0 : status, err ? NULL : (body ? body : ""), err ? 0 : len, err);
		free(body);
	}
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct sock *s = (struct sock *)w;
	struct http *h = s->h;  /* curl may free s inside socket_action */
	int action = (revents & EV_READ ? CURL_CSELECT_IN : 0) | (revents & EV_WRITE ? CURL_CSELECT_OUT : 0);
	(void)loop;

	curl_multi_socket_action(h->multi, s->fd, action, &h->running);
	check_done(h);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct http *h = w->data;
	(void)loop;
	(void)revents;

	curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &h->running);
	check_done(h);
}

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct http *h = userp;
	struct sock *s = socketp;
	(void)easy;

	if (what == CURL_POLL_REMOVE) {
		if (s) {
			ev_io_stop(h->loop, &s->io);
			free(s);
		}
		return 0;
	}
	if (!s) {
		if (!(s = calloc(1, sizeof(*s))))
			return -1; /* curl fails this transfer */
		s->h = h;
		s->fd = fd;
		curl_multi_assign(h->multi, fd, s);
	} else {
		ev_io_stop(h->loop, &s->io);
	}
	int events = (what & CURL_POLL_IN ? EV_READ : 0) | (what & CURL_POLL_OUT ? EV_WRITE : 0);
	ev_io_init(&s->io, io_cb, fd, events);
	ev_io_start(h->loop, &s->io);
	return 0;
}

static int timerfunction_cb(CURLM *multi, long timeout_ms, void *userp)
{
	struct http *h = userp;
	(void)multi;

	ev_timer_stop(h->loop, &h->timer);
	if (timeout_ms >= 0) {
		ev_timer_set(&h->timer, (double)timeout_ms / 1000.0, 0);
		ev_timer_start(h->loop, &h->timer);
	}
	return 0;
}

static size_t write_cb(char *data, size_t size, size_t n, void *userp)
{
	struct http_request *r = userp;
	size_t bytes = size * n;

	if (r->len + bytes > BODY_MAX) {
		r->too_long = true;
		return 0; /* curl aborts the transfer */
	}
	char *b = realloc(r->body, r->len + bytes + 1);
	if (!b)
		return 0;
	memcpy(b + r->len, data, bytes);
	r->body = b;
	r->len += bytes;
	b[r->len] = '\0';
	return bytes;
}

struct http *http_new(struct ev_loop *loop)
{
	struct http *h = calloc(1, sizeof(*h));

	if (!h || !(h->multi = curl_multi_init())) {
		free(h);
		return NULL;
	}
	h->loop = loop;
	ev_init(&h->timer, timer_cb);
	h->timer.data = h;
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timerfunction_cb);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
	return h;
}

void http_free(struct http *h)
{
	if (!h)
		return;
	while (h->requests)
		http_cancel(h->requests);
	ev_timer_stop(h->loop, &h->timer);
	curl_multi_cleanup(h->multi);
	free(h);
}

struct http_request *http_get(struct http *h, const char *url, const char *const *headers,
			      bool no_proxy, long timeout, http_done_fn done, void *arg)
{
	struct http_request *r = calloc(1, sizeof(*r));

	if (!r || !(r->easy = curl_easy_init())) {
		free(r);
		return NULL;
	}
	r->h = h;
	r->done = done;
	r->arg = arg;
	for (const char *const *hd = headers; hd && *hd; hd++) {
		struct curl_slist *l = curl_slist_append(r->headers, *hd);
		if (!l) {
			curl_slist_free_all(r->headers);
			curl_easy_cleanup(r->easy);
			free(r);
			return NULL;
		}
		r->headers = l;
	}
	curl_easy_setopt(r->easy, CURLOPT_URL, url);
	curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->headers);
	curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
	curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->error);
	curl_easy_setopt(r->easy, CURLOPT_TIMEOUT, timeout);
	curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(r->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(r->easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(r->easy, CURLOPT_USERAGENT, "acrdnsd/" PACKAGE_VERSION);
	if (no_proxy)
		curl_easy_setopt(r->easy, CURLOPT_NOPROXY, "*");
	if (curl_multi_add_handle(h->multi, r->easy) != CURLM_OK) {
		curl_slist_free_all(r->headers);
		curl_easy_cleanup(r->easy);
		free(r);
		return NULL;
	}
	r->next = h->requests;
	if (h->requests)
		h->requests->prev = r;
	h->requests = r;
	return r;
}

void http_cancel(struct http_request *r)
{
	struct http *h = r->h;

	curl_multi_remove_handle(h->multi, r->easy);
	curl_easy_cleanup(r->easy);
	curl_slist_free_all(r->headers);
	if (r->prev)
		r->prev->next = r->next;
	else
		h->requests = r->next;
	if (r->next)
		r->next->prev = r->prev;
	free(r->body);
	free(r);
}
