#!/bin/bash
# `make check-system`: the Debian package, the container image and the
# package under a booted systemd, from the `make dist` tarball (so that no
# build of this tree leaks in).  Needs root, and the Debian archive once to
# make the cached roots (lib.sh).  Each part prints its steps; a part that
# cannot run here is skipped saying why.  Exit 1 when a part failed.
#
# usage: tests/system/run.sh TARBALL
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tarball=$(readlink -f "${1:?usage: run.sh TARBALL}")
out=$PWD/tests/system/out
export ACRDNS_SRCDIR=${ACRDNS_SRCDIR:-$(cd "$here/../.." && pwd)}
export ACRDNS_SYSTEM_CACHE=${ACRDNS_SYSTEM_CACHE:-$PWD/tests/system/cache}
result=0
summary=

part() {
	local name=$1 start rc
	shift
	echo "== $name"
	start=$(date +%s)
	"$@"
	rc=$?
	case $rc in
	0) summary="$summary$name: passed in $(($(date +%s) - start)) s"$'\n' ;;
	77) summary="$summary$name: SKIPPED (see above)"$'\n' ;;
	*) summary="$summary$name: FAILED"$'\n'; result=1 ;;
	esac
	return $rc
}

# The package: dpkg-buildpackage in an unpacked tarball, then lintian.
package() {
	[ "$(id -u)" = 0 ] || { echo "SKIP: needs root"; return 77; }
	for t in dpkg-buildpackage dh lintian; do
		command -v $t >/dev/null || { echo "SKIP: $t is not installed (debhelper, lintian)"; return 77; }
	done
	rm -rf "$out/pkg" && mkdir -p "$out/pkg" && tar -C "$out/pkg" -xzf "$tarball" || return 1
	local src
	src=$(echo "$out"/pkg/*/)
	if ! (cd "$src" && dpkg-buildpackage -us -uc -b) > "$out/pkg/build.log" 2>&1; then
		tail -30 "$out/pkg/build.log"
		echo "not ok - dpkg-buildpackage -us -uc -b (log: $out/pkg/build.log)"
		return 1
	fi
	echo "ok - dpkg-buildpackage -us -uc -b: $(cd "$out/pkg" && ls acrdns_*.deb)"
	if lintian --fail-on error "$out"/pkg/acrdns_*.changes > "$out/pkg/lintian.log" 2>&1; then
		echo "ok - lintian: no errors ($(grep -c '^W:' "$out/pkg/lintian.log") warnings)"
		sed 's/^/#   /' "$out/pkg/lintian.log"
	else
		cat "$out/pkg/lintian.log"
		echo "not ok - lintian reports errors"
		return 1
	fi
}

image() {
	rm -rf "$out/image" && mkdir -p "$out/image" && tar -C "$out/image" -xzf "$tarball" || return 1
	"$here/image.sh" "$(echo "$out"/image/*/)"
}

mkdir -p "$out"
part "package" package
part "image" image
deb=$(ls "$out"/pkg/acrdns_*.deb 2>/dev/null | head -1)
if [ -n "$deb" ]; then
	part "systemd" "$here/boot.sh" "$deb"
else
	summary="${summary}systemd: not run (no package)"$'\n'
	result=1
fi
echo "== summary"
printf '%s' "$summary"
exit $result
