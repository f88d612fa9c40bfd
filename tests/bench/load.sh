#!/bin/bash
# Load run: acrdnsd at 80 % of its measured maximum for a while, with a mix
# of cached, uncached and denied names, sampling its RSS.  Reports the
# queries lost (goal 0) and RSS at start, middle and end (goal: flat once
# the cache is full; the cache is 16 MiB here so that it fills).
#
# Usage: tests/bench/load.sh [seconds, default 60] [--reload]
#   --reload: SIGHUP and a discovery change every second during the run.
# Needs: dnsperf unbound (Debian).
set -euo pipefail

DUR=${1:-60}
RELOAD=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
top=$(cd "$here/../.." && pwd)
ACRDNSD=${ACRDNSD:-$top/daemon/acrdnsd}
PATH=$PATH:/usr/sbin
for tool in dnsperf unbound; do
	command -v $tool >/dev/null || { echo "load: $tool is missing (apt-get install dnsperf unbound)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/acrdns-load.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
read -r UP ACR < <(free_ports 2)

upstream_conf $UP "$work" > "$work/upstream.conf"
unbound -d -c "$work/upstream.conf" & pids+=($!)

disc() { # endpoints for the discovery file
	printf '{"loginServer":"contoso.azurecr.io","dataEndpoints":['
	local sep=""
	for r in "$@"; do printf '%s{"region":"%s","endpoint":"contoso.%s.data.azurecr.io"}' "$sep" "$r" "$r"; sep=,; done
	printf ']}\n'
}
disc eastus > "$work/contoso.json"
cat > "$work/acrdnsd.conf" <<CONF
listen = [ "127.0.0.1:$ACR" ];
upstreams = [ "127.0.0.1:$UP" ];
mode = "filter";
rules = [ "$top/rules/*.rules" ];
registries = ( { login_server = "contoso.azurecr.io";
                 discovery = { source = "file"; path = "$work/contoso.json"; interval = 300; }; } );
state_dir = "$work/state";
cache = { size = "16M"; };
log = { level = "notice"; queries = "none"; };
user = "root";   # the benchmark runs as root; its files are in a private directory
CONF
"$ACRDNSD" -f -c "$work/acrdnsd.conf" 2> "$work/acrdnsd.log" & ACR_PID=$!; pids+=($ACR_PID)
sleep 1

# A third cached (100 names), a third never seen before, a third denied.
awk 'BEGIN { srand(7); for (i = 0; i < 3000000; i++) {
	k = i % 3
	if (k == 0) printf "host%d.bench.lan A\n", i % 100
	else if (k == 1) printf "u%d-%d.bench.lan A\n", i, int(rand() * 1e9)
	else printf "acct%d.blob.core.windows.net A\n", i }
}' > "$work/mix.txt"
rss() { awk '/VmRSS/ { print $2 }' /proc/$ACR_PID/status; }

dnsperf -s 127.0.0.1 -p $ACR -d "$work/mix.txt" -l 10 -c 4 -q 200 > "$work/max.out" 2>&1
MAX=$(awk '/Queries per second/ { print int($4) }' "$work/max.out")
RATE=$((MAX * 8 / 10))
echo "maximum with the mix: $MAX qps; load: $RATE qps for $DUR s${RELOAD:+, with a reload and a discovery change every second}"

rss0=$(rss)
dnsperf -s 127.0.0.1 -p $ACR -d "$work/mix.txt" -l "$DUR" -c 4 -q 500 -Q "$RATE" -t 5 > "$work/load.out" 2>&1 & PERF=$!
: > "$work/rss.txt"
flip=0
for ((s = 1; s <= DUR; s++)); do
	sleep 1
	rss >> "$work/rss.txt"
	if [ -n "$RELOAD" ]; then
		if [ $flip = 0 ]; then disc eastus westus > "$work/contoso.json.new"; flip=1
		else disc eastus > "$work/contoso.json.new"; flip=0; fi
		mv "$work/contoso.json.new" "$work/contoso.json"
		kill -HUP $ACR_PID
	fi
done
wait $PERF || true
mid=$(sed -n "$((DUR / 2))p" "$work/rss.txt")
end=$(tail -1 "$work/rss.txt")
sent=$(awk '/Queries sent/ { print $3 }' "$work/load.out")
lost=$(awk '/Queries lost/ { print $3 }' "$work/load.out")
qps=$(awk '/Queries per second/ { print int($4) }' "$work/load.out")
printf 'sent %s, lost %s, %s qps\n' "$sent" "$lost" "$qps"
printf 'RSS KiB: start %s, middle %s, end %s, max %s\n' "$rss0" "$mid" "$end" "$(sort -n "$work/rss.txt" | tail -1)"
grep -E "Response codes" "$work/load.out" || true
[ -n "$RELOAD" ] && printf 'reloads: %s done, %s failed; discovery changes: %s\n' \
	"$(grep -c 'configuration reloaded' "$work/acrdnsd.log" || true)" \
	"$(grep -c 'reload failed' "$work/acrdnsd.log" || true)" \
	"$(grep -c 'endpoint added' "$work/acrdnsd.log" || true)"
kill -USR1 $ACR_PID; sleep 0.3; grep -o 'stats .*' "$work/acrdnsd.log" | tail -1 | tr ' ' '\n' | grep -E "^(queries_udp|cache_hits|cache_misses|denied|servfail|send_errors|stale_served)="
