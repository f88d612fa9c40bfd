/**
 * \file discovery.c
 * Discovery tasks on the event loop.  Sources: a file (re-read when it
 * changes), a command (run without blocking, killed at its timeout), and
 * the static list in the configuration.  Every document goes through
 * discovery_doc_parse(), which accepts only the registry's own names.
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"
#include "discovery.h"
#include "discovery_doc.h"
#include "http.h"
#include "log.h"
#include "policy.h"
#include "query.h"
#include "random.h"
#include "saver.h"
#include "server.h"
#include "wire.h"

#define DOC_MAX DISCOVERY_DOC_MAX
#define BACKOFF_FIRST 2.0
/*
 * The api-versions asked for, newest first.  Only the previews list
 * regionalEndpointHostNames (<registry>.<region>.geo.azurecr.io); the
 * stable versions have dataEndpointHostNames alone.  A cloud that answers
 * HTTP 400 (it does not know the version) is asked with the next one.
 */
static const char *const arm_api_versions[] = { "2026-09-01-preview", "2025-11-01", "2023-07-01",
						NULL };
#define IMDS_API_VERSION "2018-02-01"
#define TOKEN_MARGIN 300   /* seconds before expires_on that a token is renewed */

/* ---- persisted state ---- */

static void state_path(char *buf, size_t len, const char *dir, const char *login, const char *ext)
{
	snprintf(buf, len, "%s/%s.json%s", dir, login, ext);
}

int discovery_state_save(const char *state_dir, const char *login_server, char *const *endpoints,
			 char *why, size_t whylen)
{
	char path[4096], tmp[4096];
	json_t *root = json_object(), *arr = json_array();
	char *text = NULL;
	int fd = -1, rc = -1;

	char hint[512];
	if (mkdir(state_dir, 0755) < 0 && errno != EEXIST) {
		snprintf(why, whylen, "cannot create %s: %s%s", state_dir, strerror(errno),
			 log_path_hint(errno, state_dir, hint, sizeof(hint)));
		goto out;
	}
	if (!root || !arr)
		goto oom;
	for (char *const *e = endpoints; *e; e++) {
		json_t *o = json_pack("{s:s}", "endpoint", *e);
		if (!o || json_array_append_new(arr, o) < 0)
			goto oom;
	}
	if (json_object_set_new(root, "loginServer", json_string(login_server)) < 0 ||
	    json_object_set(root, "dataEndpoints", arr) < 0 ||
	    json_object_set_new(root, "savedAt", json_integer((json_int_t)time(NULL))) < 0 ||
	    !(text = json_dumps(root, JSON_INDENT(2))))
		goto oom;
	state_path(path, sizeof(path), state_dir, login_server, "");
	state_path(tmp, sizeof(tmp), state_dir, login_server, ".tmp");
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	size_t len = strlen(text);
	if (fd < 0 || write(fd, text, len) != (ssize_t)len || write(fd, "\n", 1) != 1 ||
	    fsync(fd) < 0) {
		snprintf(why, whylen, "cannot write %s: %s%s", tmp, strerror(errno),
			 log_path_hint(errno, state_dir, hint, sizeof(hint)));
		goto out;
	}
	close(fd);
	fd = -1;
	if (rename(tmp, path) < 0) {
		snprintf(why, whylen, "cannot rename %s: %s", tmp, strerror(errno));
		goto out;
	}
	/* The rename itself must reach the disk. */
	int dfd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	rc = 0;
	goto out;
oom:
	snprintf(why, whylen, "out of memory");
out:
	if (fd >= 0) {
		close(fd);
		unlink(tmp);
	}
	free(text);
	json_decref(arr);
	json_decref(root);
	return rc;
}

/** Read a whole file of at most DOC_MAX bytes. @return malloc'd text or NULL (errno set) */
static char *read_file(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st = { 0 };
	char *buf;

	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) < 0 || st.st_size > DOC_MAX) {
		int e = st.st_size > DOC_MAX ? EFBIG : errno;
		close(fd);
		errno = e;
		return NULL;
	}
	if (!(buf = malloc((size_t)st.st_size + 1))) {
		close(fd);
		errno = ENOMEM;
		return NULL;
	}
	size_t have = 0;
	while (have < (size_t)st.st_size + 1) {
		ssize_t n = read(fd, buf + have, (size_t)st.st_size + 1 - have);
		if (n <= 0)
			break;
		have += (size_t)n;
	}
	close(fd);
	if (have > (size_t)st.st_size) {
		/* Grew while being read: read it again at the next change. */
		free(buf);
		errno = EAGAIN;
		return NULL;
	}
	*len = have;
	return buf;
}

char **discovery_state_load(const char *state_dir, const char *login_server)
{
	char path[4096], why[512];
	char **list = NULL;
	size_t len;
	char *doc;

	state_path(path, sizeof(path), state_dir, login_server, "");
	if (!(doc = read_file(path, &len)))
		return NULL;
	if (discovery_doc_parse(doc, len, login_server, &list, why, sizeof(why)) != DISCOVERY_OK) {
		log_warn("discovery %s: ignoring saved state %s: %s", login_server, path, why);
		list = NULL;
	}
	free(doc);
	return list;
}

/* ---- tasks ---- */

/** The last good list of one registry, kept across reloads. */
struct known {
	char *login;
	char **endpoints;   /**< NULL until something was discovered or loaded */
	uint64_t successes, failures; /**< runs of the source since start, across reloads */
	time_t saved;       /**< when the set loaded at start was saved; 0: none loaded */
};

struct task {
	struct discovery *d;
	char *login;
	struct cfg_discovery src;   /**< copy: the configuration may be freed by a reload */
	char *state_dir;
	ev_timer timer;
	ev_stat stat;
	bool stat_on;
	unsigned failures;
	time_t last_success;
	char last_error[512];
	ev_tstamp next_refresh;
	/* a running command */
	pid_t pid;
	ev_child child;
	ev_io out_io, err_io;
	ev_timer kill_timer;
	int out_fd, err_fd;
	char *out;
	size_t out_len;
	char err_line[512];
	size_t err_len;
	bool exited, timed_out, too_long;
	int status;
	/* arm */
	struct http_request *req;
	char *token;
	time_t token_expires;
	bool auth_retried;
	unsigned api_step;          /**< index in arm_api_versions: each HTTP 400 moves one on */
};

struct discovery {
	struct server *srv;
	discovery_changed_fn changed;
	struct known *known;
	size_t n_known;
	struct task **tasks;
	size_t n_tasks;
	char ***view;               /**< for discovery_endpoints() */
	size_t n_view;
	struct http *http;          /**< made when a registry uses the arm source */
	struct saver *saver;        /**< writes the state files; made with the first change */
};

static struct known *known_get(struct discovery *d, const char *login, const char *state_dir)
{
	for (size_t i = 0; i < d->n_known; i++)
		if (strcasecmp(d->known[i].login, login) == 0)
			return &d->known[i];
	struct known *k = realloc(d->known, (d->n_known + 1) * sizeof(*k));
	if (!k)
		return NULL;
	d->known = k;
	k = &d->known[d->n_known];
	memset(k, 0, sizeof(*k));
	if (!(k->login = strdup(login)))
		return NULL;
	/* A restart without network still allows the endpoints it knew. */
	k->endpoints = discovery_state_load(state_dir, login);
	if (k->endpoints) {
		char path[4096];
		struct stat st;
		state_path(path, sizeof(path), state_dir, login, "");
		if (stat(path, &st) == 0)
			k->saved = st.st_mtime;
		log_info("discovery %s: loaded saved endpoints from %s", login, state_dir);
	}
	d->n_known++;
	return k;
}

char **const *discovery_endpoints(struct discovery *d, const struct config *cfg)
{
	char ***view = calloc(cfg->n_registries + 1, sizeof(*view));

	if (!view)
		return (char **const *)d->view;
	for (size_t i = 0; i < cfg->n_registries; i++) {
		struct known *k = known_get(d, cfg->registries[i].login_server.s, cfg->state_dir);
		view[i] = k ? k->endpoints : NULL;
	}
	free(d->view);
	d->view = view;
	d->n_view = cfg->n_registries;
	return (char **const *)view;
}

struct discovery *discovery_new(struct server *s, discovery_changed_fn changed)
{
	struct discovery *d = calloc(1, sizeof(*d));

	if (d) {
		d->srv = s;
		d->changed = changed;
	}
	return d;
}

static const char *source_name(enum cfg_source s)
{
	static const char *const names[] = { "static", "file", "command", "arm" };
	return names[s];
}

static void command_cleanup(struct task *t);

static void task_free(struct task *t)
{
	struct ev_loop *loop = t->d->srv->loop;

	ev_timer_stop(loop, &t->timer);
	if (t->stat_on)
		ev_stat_stop(loop, &t->stat);
	if (t->pid > 0) {
		kill(-t->pid, SIGKILL);
		ev_child_stop(loop, &t->child);
		/* Reap it now: nobody else will. */
		waitpid(t->pid, NULL, 0);
		t->pid = 0;
	}
	command_cleanup(t);
	if (t->req)
		http_cancel(t->req);
	free(t->token);
	free(t->src.resource_id);
	free(t->src.arm_endpoint);
	free(t->src.imds_endpoint);
	free(t->src.client_id);
	free(t->src.api_version);
	free(t->login);
	free(t->src.path);
	if (t->src.command)
		for (char **a = t->src.command; *a; a++)
			free(*a);
	free(t->src.command);
	free(t->state_dir);
	free(t);
}

void discovery_free(struct discovery *d)
{
	if (!d)
		return;
	saver_free(d->saver);       /* writes what still waits: the last state is kept */
	for (size_t i = 0; i < d->n_tasks; i++)
		task_free(d->tasks[i]);
	free(d->tasks);
	for (size_t i = 0; i < d->n_known; i++) {
		free(d->known[i].login);
		discovery_list_free(d->known[i].endpoints);
	}
	free(d->known);
	free(d->view);
	http_free(d->http);
	free(d);
}

static void schedule(struct task *t, ev_tstamp delay)
{
	struct ev_loop *loop = t->d->srv->loop;

	ev_timer_stop(loop, &t->timer);
	ev_timer_set(&t->timer, delay, 0);
	ev_timer_start(loop, &t->timer);
	t->next_refresh = ev_now(loop) + delay;
}

/** interval ± 10 % */
static ev_tstamp jittered(double base)
{
	return base * (0.9 + 0.2 * (double)random_uniform(1000001) / 1000000.0);
}

static void task_failed(struct task *t, const char *why)
{
	double backoff = BACKOFF_FIRST;

	snprintf(t->last_error, sizeof(t->last_error), "%s", why);
	t->failures++;
	struct known *k = known_get(t->d, t->login, t->state_dir);
	if (k)
		k->failures++;
	for (unsigned i = 1; i < t->failures && backoff < t->src.interval; i++)
		backoff *= 2;
	if (backoff > t->src.interval)
		backoff = t->src.interval;
	backoff = jittered(backoff);
	log_err("discovery %s: %s; keeping the last good endpoints; next try in %.0f s", t->login,
		why, backoff);
	schedule(t, backoff);
}

static bool same_list(char *const *a, char *const *b)
{
	if (!a || !b)
		return a == b;
	for (; *a && *b; a++, b++)
		if (strcmp(*a, *b) != 0)
			return false;
	return *a == *b;
}

static bool in_list(char *const *list, const char *s)
{
	for (; list && *list; list++)
		if (strcmp(*list, s) == 0)
			return true;
	return false;
}

/** Resolve a new endpoint now, so the first pull after the change is a cache hit. */
static void prefetch(struct server *s, const char *name)
{
	uint8_t wire[WIRE_NAME_MAX + 1];
	int len = wire_name_from_str(name, wire);

	if (len < 0)
		return;
	query_prefetch(s, wire, (size_t)len, LDNS_RR_TYPE_A);
	query_prefetch(s, wire, (size_t)len, LDNS_RR_TYPE_AAAA);
}

static void save_failed(void *arg, const char *login, const char *why)
{
	(void)arg;
	log_warn("discovery %s: not saved: %s", login, why);
}

/**
 * Persist a registry's new list.  Off the loop: the fsyncs take as long as
 * the disk likes, and answers must not wait for them.
 */
static void save(struct discovery *d, struct task *t, char *const *list)
{
	if (!d->saver && !(d->saver = saver_new(d->srv->loop, discovery_state_save, save_failed, NULL))) {
		char why[512];
		if (discovery_state_save(t->state_dir, t->login, list, why, sizeof(why)) < 0)
			save_failed(NULL, t->login, why);
		return;
	}
	saver_save(d->saver, t->state_dir, t->login, list);
}

/** A good document: adopt its list when it changed. */
static void task_succeeded(struct task *t, char **list)
{
	struct discovery *d = t->d;
	struct known *k = known_get(d, t->login, t->state_dir);

	t->failures = 0;
	t->last_error[0] = '\0';
	t->last_success = time(NULL);
	schedule(t, jittered(t->src.interval));
	if (!k) {
		discovery_list_free(list);
		return;
	}
	k->successes++;
	if (same_list(k->endpoints, list)) {
		log_debug("discovery %s: endpoints unchanged", t->login);
		discovery_list_free(list);
		return;
	}
	char **old = k->endpoints;
	k->endpoints = list;
	/* The swap first: once "endpoint added" is logged the policy has it,
	 * even while worker threads answer; the save goes to the saver thread. */
	d->changed(d->srv);
	for (char **e = list; *e; e++)
		if (!in_list(old, *e))
			log_notice("discovery %s: endpoint added: %s", t->login, *e);
	for (char **e = old; e && *e; e++)
		if (!in_list(list, *e))
			log_notice("discovery %s: endpoint removed: %s", t->login, *e);
	save(d, t, list);
	/* After the swap: what left is no longer allowed; drop it from the cache. */
	for (char **e = old; e && *e; e++) {
		if (in_list(list, *e))
			continue;
		uint8_t wire[WIRE_NAME_MAX + 1];
		int len = wire_name_from_str(*e, wire);
		if (len > 0)
			cache_flush(d->srv->cache, wire, (size_t)len);
	}
	for (char **e = list; *e; e++)
		if (!in_list(old, *e))
			prefetch(d->srv, *e);
	discovery_list_free(old);
}

static void handle_document(struct task *t, const char *doc, size_t len, const char *from)
{
	char why[600], msg[700];
	char **list = NULL;

	switch (discovery_doc_parse(doc, len, t->login, &list, why, sizeof(why))) {
	case DISCOVERY_OK:
		task_succeeded(t, list);
		return;
	case DISCOVERY_FOREIGN:
		snprintf(msg, sizeof(msg), "%s rejected whole: %s", from, why);
		break;
	default:
		snprintf(msg, sizeof(msg), "%s: %s", from, why);
		break;
	}
	task_failed(t, msg);
}

static void refresh_file(struct task *t)
{
	size_t len;
	char *doc = read_file(t->src.path, &len), msg[600];

	if (!doc) {
		snprintf(msg, sizeof(msg), "cannot read %s: %s", t->src.path, strerror(errno));
		task_failed(t, msg);
		return;
	}
	handle_document(t, doc, len, t->src.path);
	free(doc);
}

/* -- command -- */

static void command_cleanup(struct task *t)
{
	struct ev_loop *loop = t->d->srv->loop;

	if (t->out_fd >= 0) {
		ev_io_stop(loop, &t->out_io);
		close(t->out_fd);
		t->out_fd = -1;
	}
	if (t->err_fd >= 0) {
		ev_io_stop(loop, &t->err_io);
		close(t->err_fd);
		t->err_fd = -1;
	}
	ev_timer_stop(loop, &t->kill_timer);
	free(t->out);
	t->out = NULL;
	t->out_len = 0;
	t->err_len = 0;
}

/** The command is done when it exited and both pipes reached end of file. */
static void command_maybe_done(struct task *t)
{
	char msg[600];

	if (!t->exited || t->out_fd >= 0 || t->err_fd >= 0)
		return;
	ev_timer_stop(t->d->srv->loop, &t->kill_timer);
	if (t->timed_out) {
		snprintf(msg, sizeof(msg), "command %s killed after %u s", t->src.command[0], t->src.timeout);
		task_failed(t, msg);
	} else if (t->too_long) {
		snprintf(msg, sizeof(msg), "command %s wrote more than %d bytes", t->src.command[0], DOC_MAX);
		task_failed(t, msg);
	} else if (!WIFEXITED(t->status) || WEXITSTATUS(t->status) != 0) {
		if (WIFEXITED(t->status))
			snprintf(msg, sizeof(msg), "command %s exited with status %d", t->src.command[0],
				 WEXITSTATUS(t->status));
		else
			snprintf(msg, sizeof(msg), "command %s died of signal %d", t->src.command[0],
				 WTERMSIG(t->status));
		task_failed(t, msg);
	} else {
		snprintf(msg, sizeof(msg), "output of %s", t->src.command[0]);
		handle_document(t, t->out ? t->out : "", t->out_len, msg);
	}
	command_cleanup(t);
}

static void out_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct task *t = w->data;
	char buf[8192];
	(void)revents;

	ssize_t n = read(t->out_fd, buf, sizeof(buf));
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n > 0) {
		if (t->out_len + (size_t)n > DOC_MAX) {
			t->too_long = true;
			kill(-t->pid, SIGKILL);
		} else {
			char *b = realloc(t->out, t->out_len + (size_t)n + 1);
			if (b) {
				memcpy(b + t->out_len, buf, (size_t)n);
				t->out = b;
				t->out_len += (size_t)n;
			}
			return;
		}
	}
	ev_io_stop(loop, w);
	close(t->out_fd);
	t->out_fd = -1;
	command_maybe_done(t);
}

static void err_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct task *t = w->data;
	char buf[1024];
	(void)revents;

	ssize_t n = read(t->err_fd, buf, sizeof(buf));
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	/* stderr goes to the log a line at a time. */
	for (ssize_t i = 0; i < n; i++) {
		if (buf[i] == '\n' || t->err_len == sizeof(t->err_line) - 1) {
			t->err_line[t->err_len] = '\0';
			if (t->err_len)
				log_warn("discovery %s: %s: %s", t->login, t->src.command[0], t->err_line);
			t->err_len = 0;
			if (buf[i] == '\n')
				continue;
		}
		t->err_line[t->err_len++] = buf[i];
	}
	if (n > 0)
		return;
	if (t->err_len) {
		t->err_line[t->err_len] = '\0';
		log_warn("discovery %s: %s: %s", t->login, t->src.command[0], t->err_line);
		t->err_len = 0;
	}
	ev_io_stop(loop, w);
	close(t->err_fd);
	t->err_fd = -1;
	command_maybe_done(t);
}

static void child_cb(struct ev_loop *loop, ev_child *w, int revents)
{
	struct task *t = w->data;
	(void)revents;

	ev_child_stop(loop, w);
	t->status = w->rstatus;
	t->exited = true;
	/* Whatever the command left running keeps our pipes open: end it. */
	kill(-t->pid, SIGKILL);
	t->pid = 0;
	command_maybe_done(t);
}

static void kill_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct task *t = w->data;
	(void)loop;
	(void)revents;

	t->timed_out = true;
	if (t->pid > 0)
		kill(-t->pid, SIGKILL);
}

static void refresh_command(struct task *t)
{
	struct ev_loop *loop = t->d->srv->loop;
	int out[2], err[2];
	char msg[600];

	if (t->pid > 0)
		return; /* the last run is still going; its timeout ends it */
	if (pipe2(out, O_CLOEXEC) < 0) {
		snprintf(msg, sizeof(msg), "pipe: %s", strerror(errno));
		task_failed(t, msg);
		return;
	}
	if (pipe2(err, O_CLOEXEC) < 0) {
		close(out[0]);
		close(out[1]);
		snprintf(msg, sizeof(msg), "pipe: %s", strerror(errno));
		task_failed(t, msg);
		return;
	}
	pid_t pid = fork();
	if (pid < 0) {
		for (int i = 0; i < 2; i++) {
			close(out[i]);
			close(err[i]);
		}
		snprintf(msg, sizeof(msg), "fork: %s", strerror(errno));
		task_failed(t, msg);
		return;
	}
	if (pid == 0) {
		sigset_t none;
		int null = open("/dev/null", O_RDONLY);
		setpgid(0, 0);
		/* libev may block signals it watches; the command starts clean. */
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		if (null >= 0)
			dup2(null, STDIN_FILENO);
		dup2(out[1], STDOUT_FILENO);
		dup2(err[1], STDERR_FILENO);
		execvp(t->src.command[0], t->src.command);
		char line[300];
		int n = snprintf(line, sizeof(line), "cannot run: %s\n", strerror(errno));
		if (write(STDERR_FILENO, line, (size_t)n) < 0)
			_exit(126);
		_exit(127);
	}
	setpgid(pid, pid);
	close(out[1]);
	close(err[1]);
	fcntl(out[0], F_SETFL, O_NONBLOCK);
	fcntl(err[0], F_SETFL, O_NONBLOCK);
	t->pid = pid;
	t->out_fd = out[0];
	t->err_fd = err[0];
	t->exited = t->timed_out = t->too_long = false;
	ev_io_init(&t->out_io, out_cb, t->out_fd, EV_READ);
	ev_io_init(&t->err_io, err_cb, t->err_fd, EV_READ);
	ev_child_init(&t->child, child_cb, pid, 0);
	ev_timer_init(&t->kill_timer, kill_cb, t->src.timeout, 0);
	t->out_io.data = t->err_io.data = t->child.data = t->kill_timer.data = t;
	ev_io_start(loop, &t->out_io);
	ev_io_start(loop, &t->err_io);
	ev_child_start(loop, &t->child);
	ev_timer_start(loop, &t->kill_timer);
}

/* -- arm -- */

static void arm_fetch_resource(struct task *t);

/** Percent-encode for a query string value. */
static void url_escape(const char *in, char *out, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	for (; *in && o + 4 < len; in++) {
		unsigned char c = (unsigned char)*in;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_' || c == '.' || c == '~') {
			out[o++] = (char)c;
		} else {
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o] = '\0';
}

/** An endpoint setting without its trailing slashes. */
static void base_url(const char *in, char *out, size_t len)
{
	snprintf(out, len, "%s", in);
	for (size_t n = strlen(out); n > 0 && out[n - 1] == '/'; n--)
		out[n - 1] = '\0';
}

static void arm_token_done(void *arg, long status, const char *body, size_t len, const char *error)
{
	struct task *t = arg;
	char msg[700];
	json_error_t jerr;

	t->req = NULL;
	if (error || status != 200) {
		if (error)
			snprintf(msg, sizeof(msg), "managed identity token: %s", error);
		else
			snprintf(msg, sizeof(msg), "managed identity token: HTTP %ld: %.200s", status, body);
		task_failed(t, msg);
		return;
	}
	json_t *root = json_loadb(body, len, 0, &jerr);
	json_t *tok = json_object_get(root, "access_token");
	json_t *exp = json_object_get(root, "expires_on");
	time_t expires = 0;
	if (json_is_string(exp))
		expires = (time_t)strtoll(json_string_value(exp), NULL, 10);
	else if (json_is_integer(exp))
		expires = (time_t)json_integer_value(exp);
	else if (json_is_integer(json_object_get(root, "expires_in")))
		expires = time(NULL) + (time_t)json_integer_value(json_object_get(root, "expires_in"));
	if (!json_is_string(tok) || json_string_length(tok) == 0 || expires == 0) {
		json_decref(root);
		task_failed(t, "managed identity token: no access_token and expires_on in the answer");
		return;
	}
	free(t->token);
	t->token = strdup(json_string_value(tok));
	t->token_expires = expires;
	json_decref(root);
	if (!t->token) {
		task_failed(t, "managed identity token: out of memory");
		return;
	}
	arm_fetch_resource(t);
}

static void arm_fetch_token(struct task *t)
{
	char url[2048], base[1024], arm[1024], resource[1100], client[600] = "";

	base_url(t->src.imds_endpoint, base, sizeof(base));
	base_url(t->src.arm_endpoint, arm, sizeof(arm));
	strcat(arm, "/");
	url_escape(arm, resource, sizeof(resource));
	if (t->src.client_id) {
		char esc[500];
		url_escape(t->src.client_id, esc, sizeof(esc));
		snprintf(client, sizeof(client), "&client_id=%s", esc);
	}
	snprintf(url, sizeof(url), "%s/metadata/identity/oauth2/token?api-version=" IMDS_API_VERSION
		 "&resource=%s%s", base, resource, client);
	static const char *const headers[] = { "Metadata: true", NULL };
	/* IMDS is link-local: never through a proxy. */
	t->req = http_get(t->d->http, url, headers, true, (long)t->src.timeout, arm_token_done, t);
	if (!t->req)
		task_failed(t, "managed identity token: cannot start the request");
}

static void arm_resource_done(void *arg, long status, const char *body, size_t len, const char *error)
{
	struct task *t = arg;
	char msg[700];

	t->req = NULL;
	if (error) {
		snprintf(msg, sizeof(msg), "ARM %s: %s", t->src.resource_id, error);
		task_failed(t, msg);
		return;
	}
	if (status == 401 && !t->auth_retried) {
		/* The token was revoked or expired early: one fresh token, at once. */
		t->auth_retried = true;
		free(t->token);
		t->token = NULL;
		arm_fetch_token(t);
		return;
	}
	if (status == 400 && !t->src.api_version && arm_api_versions[t->api_step + 1]) {
		/* A cloud that does not know this api-version yet: the next one, at
		 * once and from now on, so that each step is logged once. */
		log_warn("discovery %s: ARM refused api-version %s (HTTP 400: %.200s); using %s",
			 t->login, arm_api_versions[t->api_step], body, arm_api_versions[t->api_step + 1]);
		t->api_step++;
		arm_fetch_resource(t);
		return;
	}
	if (status != 200) {
		/* 404/410 (replication lag), 429 (throttled), 5xx: tried again with backoff. */
		snprintf(msg, sizeof(msg), "ARM %s: HTTP %ld: %.200s", t->src.resource_id, status, body);
		task_failed(t, msg);
		return;
	}
	snprintf(msg, sizeof(msg), "ARM %s", t->src.resource_id);
	handle_document(t, body, len, msg);
}

static void arm_fetch_resource(struct task *t)
{
	char url[4096], base[1024], auth[8192];

	base_url(t->src.arm_endpoint, base, sizeof(base));
	snprintf(url, sizeof(url), "%s%s?api-version=%s", base, t->src.resource_id,
		 t->src.api_version ? t->src.api_version : arm_api_versions[t->api_step]);
	if ((size_t)snprintf(auth, sizeof(auth), "Authorization: Bearer %s", t->token) >= sizeof(auth)) {
		task_failed(t, "managed identity token is too long");
		return;
	}
	const char *headers[] = { auth, NULL };
	t->req = http_get(t->d->http, url, headers, false, (long)t->src.timeout, arm_resource_done, t);
	explicit_bzero(auth, sizeof(auth));
	if (!t->req)
		task_failed(t, "ARM: cannot start the request");
}

static void refresh_arm(struct task *t)
{
	if (t->req)
		return; /* still waiting for the last one */
	if (!t->d->http && !(t->d->http = http_new(t->d->srv->loop))) {
		task_failed(t, "cannot set up libcurl");
		return;
	}
	t->auth_retried = false;
	if (t->token && time(NULL) < t->token_expires - TOKEN_MARGIN)
		arm_fetch_resource(t);
	else
		arm_fetch_token(t);
}

static void refresh(struct task *t)
{
	switch (t->src.source) {
	case SOURCE_FILE:
		refresh_file(t);
		break;
	case SOURCE_COMMAND:
		/* The next run is scheduled when this one ends. */
		ev_timer_stop(t->d->srv->loop, &t->timer);
		refresh_command(t);
		break;
	case SOURCE_ARM:
		ev_timer_stop(t->d->srv->loop, &t->timer);
		refresh_arm(t);
		break;
	default:
		break;
	}
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	refresh(w->data);
}

static void stat_cb(struct ev_loop *loop, ev_stat *w, int revents)
{
	struct task *t = w->data;
	(void)loop;
	(void)revents;

	if (w->attr.st_nlink == 0)
		return; /* removed; the timer will report it */
	log_info("discovery %s: %s changed", t->login, t->src.path);
	refresh(t);
}

static struct task *task_new(struct discovery *d, const struct cfg_registry *r, const struct config *cfg)
{
	struct task *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->d = d;
	t->out_fd = t->err_fd = -1;
	t->src = r->discovery;
	t->src.path = r->discovery.path ? strdup(r->discovery.path) : NULL;
	t->src.command = NULL;
	t->src.resource_id = r->discovery.resource_id ? strdup(r->discovery.resource_id) : NULL;
	t->src.arm_endpoint = strdup(r->discovery.arm_endpoint ? r->discovery.arm_endpoint
							       : "https://management.azure.com");
	t->src.imds_endpoint = strdup(r->discovery.imds_endpoint ? r->discovery.imds_endpoint
								 : "http://169.254.169.254");
	t->src.client_id = r->discovery.client_id ? strdup(r->discovery.client_id) : NULL;
	t->src.api_version = r->discovery.api_version ? strdup(r->discovery.api_version) : NULL;
	t->login = strdup(r->login_server.s);
	t->state_dir = strdup(cfg->state_dir);
	if (r->discovery.command) {
		size_t n = 0;
		while (r->discovery.command[n])
			n++;
		t->src.command = calloc(n + 1, sizeof(char *));
		for (size_t i = 0; t->src.command && i < n; i++)
			t->src.command[i] = strdup(r->discovery.command[i]);
	}
	if (!t->login || !t->state_dir || (r->discovery.path && !t->src.path) ||
	    !t->src.arm_endpoint || !t->src.imds_endpoint ||
	    (r->discovery.resource_id && !t->src.resource_id) ||
	    (r->discovery.client_id && !t->src.client_id) ||
	    (r->discovery.api_version && !t->src.api_version) ||
	    (r->discovery.command && !t->src.command)) {
		task_free(t);
		return NULL;
	}
	ev_init(&t->timer, timer_cb);
	t->timer.data = t;
	if (t->src.source == SOURCE_FILE) {
		ev_stat_init(&t->stat, stat_cb, t->src.path, 0.5);
		t->stat.data = t;
		ev_stat_start(d->srv->loop, &t->stat);
		t->stat_on = true;
	}
	return t;
}

void discovery_configure(struct discovery *d, const struct config *cfg)
{
	for (size_t i = 0; i < d->n_tasks; i++)
		task_free(d->tasks[i]);
	free(d->tasks);
	d->tasks = calloc(cfg->n_registries ? cfg->n_registries : 1, sizeof(*d->tasks));
	d->n_tasks = 0;
	if (!d->tasks) {
		log_err("discovery: out of memory; endpoints stay as they are");
		return;
	}
	for (size_t i = 0; i < cfg->n_registries; i++) {
		const struct cfg_registry *r = &cfg->registries[i];
		if (r->discovery.source == SOURCE_STATIC)
			continue;
		struct task *t = task_new(d, r, cfg);
		if (!t) {
			log_err("discovery %s: out of memory; not started", r->login_server.s);
			continue;
		}
		d->tasks[d->n_tasks++] = t;
		log_info("discovery %s: source %s, every %u s", t->login, source_name(t->src.source),
			 t->src.interval);
		schedule(t, 0);
	}
}

void discovery_each(struct discovery *d, void (*fn)(void *arg, const struct discovery_info *info),
		    void *arg)
{
	for (size_t i = 0; i < d->n_tasks; i++) {
		struct task *t = d->tasks[i];
		struct known *k = NULL;
		for (size_t j = 0; j < d->n_known; j++)
			if (strcasecmp(d->known[j].login, t->login) == 0)
				k = &d->known[j];
		struct discovery_info info = {
			t->login, source_name(t->src.source), t->last_success, t->last_error,
			t->next_refresh - ev_now(d->srv->loop), k ? k->endpoints : NULL,
			k ? k->successes : 0, k ? k->failures : 0, k ? k->saved : 0,
		};
		fn(arg, &info);
	}
}
