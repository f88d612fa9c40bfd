#!/bin/sh
# Fail when the modules in daemon/ include each other in a circle.
#
# A module is a file pair (x.c and x.h, or a lone header); module a uses
# module b when a.c or a.h has `#include "b.h"`.  Layers hand handlers down
# and return answers up, so this graph must have no cycle: a lower layer
# that names the one above it (as upstream once called query, and config
# once included policy) is the change this test stops.
set -eu
dir=${1:-${ACRDNS_SRCDIR:-$(dirname "$0")/../..}/daemon}
edges=$(mktemp)
trap 'rm -f "$edges"' EXIT
for f in "$dir"/*.c "$dir"/*.h; do
	from=$(basename "$f"); from=${from%.*}
	sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)\.h".*/\1/p' "$f" |
	while read -r to; do
		[ "$to" = "$from" ] || [ "$to" = autoconf ] || [ ! -e "$dir/$to.h" ] ||
			echo "$from $to"
	done
done | sort -u >"$edges"
# tsort reports a cycle on stderr (and still exits 0 on some systems).
out=$(tsort "$edges" 2>&1 >/dev/null || true)
if [ -n "$out" ]; then
	echo "include_cycles: the modules in $dir include each other in a circle:" >&2
	echo "$out" | sed 's/^tsort: //; s/^.*: input contains a loop:/a loop through:/; s/^/  /' >&2
	exit 1
fi
echo "include_cycles: $(wc -l <"$edges") uses between modules, no cycle"
