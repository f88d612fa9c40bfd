/**
 * \file privs.c
 * Privilege drop, in the order that cannot be undone halfway: look the
 * user up, chown what the daemon must keep writing, clear supplementary
 * groups, set the group, then the user; then check that root cannot be
 * regained.  Capabilities other than CAP_NET_ADMIN (kept only for the
 * nftables sets) go with the user change.
 */
#include "autoconf.h"

#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"
#include "privs.h"

/** mkdir -p for the state directory; the last component 0750. */
static int make_dir(const char *path)
{
	char buf[4096];

	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return -1;
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	return mkdir(buf, 0750) < 0 && errno != EEXIST ? -1 : 0;
}

/** Keep exactly CAP_NET_ADMIN in the permitted and effective sets. */
static int keep_net_admin(void)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];

	memset(d, 0, sizeof(d));
	d[CAP_NET_ADMIN / 32].permitted = d[CAP_NET_ADMIN / 32].effective = 1u << (CAP_NET_ADMIN % 32);
	return (int)syscall(SYS_capset, &h, d);
}

/** Who the daemon becomes. */
struct privs_user {
	const char *name;
	uid_t uid;
	gid_t gid;
};

/**
 * Look up the configured user (or 'nobody' for a default user that does not
 * exist) and group.
 * @return 0, or -1 with err set
 */
static int find_user(const struct config *cfg, struct privs_user *u, char *err, size_t errlen)
{
	const char *name = cfg->user;
	struct passwd *pw;
	gid_t gid;

	errno = 0;
	if (!(pw = getpwnam(name)) && !cfg->user_set) {
		/* The default user is created by the package (sysusers.d); a
		 * build run from its tree falls back the way dnsmasq does. */
		log_warn("user '%s' does not exist; running as 'nobody' instead (create it with "
			 "systemd-sysusers, or set 'user')", name);
		name = "nobody";
		pw = getpwnam(name);
	}
	if (!pw) {
		snprintf(err, errlen, "%s: user '%s' does not exist; create it or set 'user' "
			 "(\"root\" keeps root)", cfg->path, name);
		return -1;
	}
	if (pw->pw_uid == 0) {
		snprintf(err, errlen, "%s: user '%s' has uid 0; name an unprivileged user, or \"root\"",
			 cfg->path, name);
		return -1;
	}
	gid = pw->pw_gid;
	if (cfg->group) {
		struct group *gr = getgrnam(cfg->group);
		if (!gr) {
			snprintf(err, errlen, "%s: group '%s' does not exist", cfg->path, cfg->group);
			return -1;
		}
		gid = gr->gr_gid;
	}
	u->name = name;
	u->uid = pw->pw_uid;
	u->gid = gid;
	return 0;
}

/** Hand the user what the daemon writes after the drop; a failure only costs that. */
static void hand_over(const struct config *cfg, const char *control_socket, const struct privs_user *u)
{
	const char *name = u->name;
	uid_t uid = u->uid;
	gid_t gid = u->gid;

	/* What the daemon writes after this: its discovery state and socket. */
	if (make_dir(cfg->state_dir) < 0 || chown(cfg->state_dir, uid, gid) < 0)
		log_warn("state_dir %s: cannot hand it to %s: %s; discovered endpoints will not be saved",
			 cfg->state_dir, name, strerror(errno));
	if (control_socket && chown(control_socket, uid, gid) < 0)
		log_warn("control socket %s: cannot hand it to %s: %s", control_socket, name,
			 strerror(errno));
	/* Our own run directory too, so that the socket can be removed at exit
	 * and made again on reload (systemd's RuntimeDirectory does the same). */
	static const char rundir[] = RUNSTATEDIR "/acrdns";
	struct stat st;
	if (control_socket && strncmp(control_socket, rundir, sizeof(rundir) - 1) == 0 &&
	    control_socket[sizeof(rundir) - 1] == '/' && stat(rundir, &st) == 0 && st.st_uid == 0 &&
	    chown(rundir, uid, gid) < 0)
		log_warn("%s: cannot hand it to %s: %s", rundir, name, strerror(errno));
}

/**
 * Become the user for good: groups, group, user, keeping only
 * CAP_NET_ADMIN when nft is on; then check that root cannot be regained.
 * @return 0, or -1 with err set
 */
static int become_user(const struct privs_user *u, bool nft, char *err, size_t errlen)
{
	const char *name = u->name;
	uid_t uid = u->uid;
	gid_t gid = u->gid;

	if (nft && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) {
		snprintf(err, errlen, "cannot keep CAP_NET_ADMIN for nftables: %s", strerror(errno));
		return -1;
	}
	if (setgroups(0, NULL) < 0 || setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0) {
		snprintf(err, errlen, "cannot become user %s (uid %u, gid %u): %s", name, (unsigned)uid,
			 (unsigned)gid, strerror(errno));
		return -1;
	}
	if (nft) {
		if (keep_net_admin() < 0) {
			snprintf(err, errlen, "cannot keep CAP_NET_ADMIN for nftables: %s", strerror(errno));
			return -1;
		}
		prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
	}
	/* Commands run by discovery must not gain privileges through set-user-ID files. */
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	if (setuid(0) == 0 || seteuid(0) == 0) {
		snprintf(err, errlen, "root could be regained after dropping privileges; stopping");
		return -1;
	}
	return 0;
}

int privs_drop(const struct config *cfg, const char *control_socket, char *err, size_t errlen)
{
	struct privs_user u;
	bool nft = cfg->nft.enabled;

	if (geteuid() != 0)
		return 0;
	if (strcmp(cfg->user, "root") == 0) {
		log_warn("running as root because the configuration says user = \"root\"");
		return 0;
	}
	if (find_user(cfg, &u, err, errlen) < 0)
		return -1;
	hand_over(cfg, control_socket, &u);
	if (become_user(&u, nft, err, errlen) < 0)
		return -1;
	log_notice("running as user %s (uid %u, gid %u)%s", u.name, (unsigned)u.uid, (unsigned)u.gid,
		   nft ? " with CAP_NET_ADMIN for nftables" : "");
	return 0;
}
