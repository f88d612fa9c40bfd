#!/bin/bash
# The Containerfile, built as a user would with Debian's buildah
# (--isolation chroot, no daemon) from a base image made offline: the cached
# debootstrap minbase tarball (lib.sh) imported as debian:12 and
# debian:12-slim.  Then the image's acrdnsd runs on a network namespace of
# its own with a configuration mounted over /etc/acrdns/acrdnsd.conf (the
# image's rules.d stays visible), against a scripted upstream, and is
# queried.  Exit 0, 1 or 77 (cannot run here, says why).
#
# usage: tests/system/image.sh CONTEXT   (a tree with the Containerfile: the
#        unpacked `make dist` tarball, so that no build output is copied in)
set -uo pipefail
. "$(dirname "$0")/lib.sh"

context=$(readlink -f "${1:?usage: image.sh CONTEXT}")
require_tools debootstrap buildah unshare dig ps ip
# Debian's python3, which has dnspython (another python3 may come first on PATH).
PYTHON=/usr/bin/python3
$PYTHON -c 'import dns.message' 2>/dev/null || skip "python3-dnspython is not installed"
ensure_minbase || exit 1

# A storage of the test's own, kept with the cache: the base and the
# package-installing layers are reused by the next run.
B=(buildah --root "$CACHE/containers/storage" --runroot "$CACHE/containers/run" --storage-driver vfs)
tmp=$(mktemp -d)
ctr=
cleanup() {
	[ -n "$ctr" ] && "${B[@]}" rm "$ctr" >/dev/null 2>&1
	rm -rf "$tmp"
}
trap cleanup EXIT

if ! "${B[@]}" inspect --type image localhost/acrdns-test-base:bookworm >/dev/null 2>&1; then
	base=$("${B[@]}" from scratch) &&
		"${B[@]}" add "$base" "$CACHE/minbase.tar" / >/dev/null &&
		"${B[@]}" config --cmd /bin/bash "$base" &&
		"${B[@]}" commit -q "$base" localhost/acrdns-test-base:bookworm >/dev/null &&
		"${B[@]}" rm "$base" >/dev/null || { notok "base image from $CACHE/minbase.tar"; exit 1; }
fi
for tag in docker.io/library/debian:12 docker.io/library/debian:12-slim; do
	"${B[@]}" tag localhost/acrdns-test-base:bookworm "$tag"
done
ok "base image: debootstrap minbase $SUITE imported as debian:12 and debian:12-slim"

start=$(date +%s)
if "${B[@]}" bud --isolation chroot --pull=never --layers -f "$context/Containerfile" \
	-t localhost/acrdns-test:latest "$context" > "$CACHE/image-build.log" 2>&1; then
	ok "buildah bud --isolation chroot -f Containerfile: built in $(($(date +%s) - start)) s"
else
	tail -30 "$CACHE/image-build.log"
	notok "buildah bud" "see $CACHE/image-build.log"
	exit 1
fi
entry=$("${B[@]}" inspect --type image --format '{{.OCIv1.Config.Entrypoint}}' localhost/acrdns-test:latest)
[ "$entry" = '[/usr/sbin/acrdnsd -f -c /etc/acrdns/acrdnsd.conf]' ] &&
	ok "entrypoint: $entry" || notok "entrypoint" "$entry"

# The operator's configuration, mounted over the image's one file.
cat > "$tmp/acrdnsd.conf" <<'CONF'
listen = [ "0.0.0.0:53" ];
access = [ "127.0.0.0/8" ];
upstreams = [ "127.0.0.1:5300" ];
rules = [ "rules.d/azure-storage.rules", "rules.d/registries.rules" ];
registries = ( { login_server = "contoso.azurecr.io"; } );
CONF
chmod 644 "$tmp/acrdnsd.conf"
ctr=$("${B[@]}" from --pull=never localhost/acrdns-test:latest) || { notok "buildah from"; exit 1; }

# In a network namespace of its own: loopback only, port 53 free.
cat > "$tmp/run.sh" <<RUN
set -u
ip link set lo up
$PYTHON "$SRCDIR/tests/system/upstream.py" 127.0.0.1 5300 "$tmp/upstream.log" &
up=\$!
$(printf '%q ' "${B[@]}") run --isolation chroot -v "$tmp/acrdnsd.conf:/etc/acrdns/acrdnsd.conf:ro" "$ctr" -- \
	/usr/sbin/acrdnsd -f -c /etc/acrdns/acrdnsd.conf > "$tmp/acrdnsd.log" 2>&1 &
for i in \$(seq 100); do
	dig +time=1 +tries=1 @127.0.0.1 contoso.azurecr.io A > /dev/null 2>&1 && break
	sleep 0.1
done
echo "allowed \$(dig +time=2 +tries=1 +short @127.0.0.1 contoso.azurecr.io A)"
echo "denied \$(dig +time=2 +tries=1 @127.0.0.1 evil.blob.core.windows.net A | sed -n 's/.*status: \([A-Z]*\),.*/\1/p')"
echo "uid \$(ps -o uid= -C acrdnsd | tr -d ' ' | head -1)"
RUN
acrdns_uid=$("${B[@]}" run --isolation chroot "$ctr" -- id -u acrdns 2>/dev/null)
# A pid namespace too: everything the script started ends with it.
out=$(unshare -n -p -f --mount-proc bash "$tmp/run.sh" 2>&1)
echo "$out" | grep -q '^allowed 10.0.0.5$' && ok "the image's acrdnsd answers contoso.azurecr.io (10.0.0.5, forwarded)" ||
	notok "allowed name" "$out; log: $(cat "$tmp/acrdnsd.log")"
echo "$out" | grep -q '^denied NXDOMAIN$' && ! grep -q blob "$tmp/upstream.log" &&
	ok "evil.blob.core.windows.net: NXDOMAIN, never forwarded (the image's rules.d is there)" ||
	notok "denied name" "$out"
[ -n "$acrdns_uid" ] && [ "$acrdns_uid" != 0 ] && echo "$out" | grep -q "^uid $acrdns_uid$" &&
	ok "runs as the image's acrdns user (uid $acrdns_uid) once the sockets are open" ||
	notok "user" "acrdns is uid '$acrdns_uid'; $out"
echo "# $step_n steps, $([ "$failed" = 0 ] && echo "all passed" || echo "some failed")"
exit "$failed"
