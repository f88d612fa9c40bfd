# Shared by the system tests (sourced): where the cached Debian 12 roots
# live and how they are made.  debootstrap runs once; later runs reuse
#   $CACHE/minbase.tar   debootstrap --variant=minbase bookworm, the base of
#                        the container image (image.sh)
#   $CACHE/root/         the same plus systemd and the package's run-time
#                        libraries, the root that boot.sh boots
# Delete $CACHE to start again from the Debian archive.

SRCDIR=${ACRDNS_SRCDIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
CACHE=${ACRDNS_SYSTEM_CACHE:-$PWD/tests/system/cache}
# The archive this machine's apt uses (first URIs:/deb line), else Debian's.
MIRROR=${ACRDNS_MIRROR:-$(sed -n -e 's/^URIs: *\(http[^ ]*\).*/\1/p' -e 's/^deb  *\(\[[^]]*\] *\)\{0,1\}\(http[^ ]*\) .*/\2/p' \
	/etc/apt/sources.list.d/debian.sources /etc/apt/sources.list 2>/dev/null | grep -v security | head -1)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
# What the root needs to boot and to run the package and the test: the
# package's Depends (checked again when boot.sh installs it, without network),
# a scripted upstream (python3-dnspython) and dig.
ROOT_PACKAGES="systemd systemd-sysv dbus libldns3 libev4 libconfig9 libjansson4 libcurl4 \
libmicrohttpd12 libnftables1 ca-certificates python3 python3-dnspython bind9-dnsutils"

SKIP=77

skip() {
	echo "SKIP: $*"
	exit $SKIP
}

step_n=0
failed=0
# ok NAME: a passed step; notok NAME WHY: a failed one (the test goes on
# only where the next steps still mean something).
ok() {
	step_n=$((step_n + 1))
	echo "ok $step_n - $*"
}
notok() {
	step_n=$((step_n + 1))
	echo "not ok $step_n - $1: ${2:-}"
	failed=1
}

require_tools() {
	[ "$(id -u)" = 0 ] || skip "needs root (debootstrap, chroot, systemd-nspawn)"
	for t in "$@"; do
		command -v "$t" >/dev/null || skip "$t is not installed"
	done
}

# The minbase tarball, made once.
ensure_minbase() {
	[ -s "$CACHE/minbase.tar" ] && return 0
	mkdir -p "$CACHE"
	local dir="$CACHE/minbase.tmp"
	rm -rf "$dir"
	echo "# debootstrap --variant=minbase $SUITE from $MIRROR (once; cached in $CACHE)"
	if ! debootstrap --variant=minbase "$SUITE" "$dir" "$MIRROR" > "$CACHE/debootstrap.log" 2>&1; then
		tail -20 "$CACHE/debootstrap.log"
		echo "debootstrap failed (log: $CACHE/debootstrap.log)" >&2
		return 1
	fi
	rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*_*
	tar -C "$dir" --numeric-owner -cf "$CACHE/minbase.tar.tmp" . &&
		mv "$CACHE/minbase.tar.tmp" "$CACHE/minbase.tar"
	rm -rf "$dir"
}

# The bootable root, made once from the minbase tarball.
ensure_root() {
	[ -e "$CACHE/root/.acrdns-root-done" ] && return 0
	ensure_minbase || return 1
	local dir="$CACHE/root.tmp"
	rm -rf "$dir" "$CACHE/root"
	mkdir -p "$dir"
	tar -C "$dir" --numeric-owner -xf "$CACHE/minbase.tar"
	echo "# apt-get install (once): $ROOT_PACKAGES"
	if ! chroot "$dir" sh -c "apt-get update && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y --no-install-recommends $ROOT_PACKAGES && apt-get clean" \
		> "$CACHE/root.log" 2>&1; then
		tail -20 "$CACHE/root.log"
		echo "installing the root's packages failed (log: $CACHE/root.log)" >&2
		return 1
	fi
	echo acrdns-test > "$dir/etc/hostname"
	# root logs in on the console without a password (nothing listens but loopback).
	chroot "$dir" passwd -d root >/dev/null
	touch "$dir/.acrdns-root-done"
	mv "$dir" "$CACHE/root"
}
