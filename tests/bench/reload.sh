#!/bin/bash
# Answer latency while the configuration changes, with a big policy.
#
# acrdnsd in filter mode with 1,000,000 extra `deny rN.bigM.example` rules
# and one registry whose endpoints come from a `file` discovery source.  100
# cached names are asked by dnsperf at a fixed rate, three times:
#   quiet      - nothing changes
#   reload     - a SIGHUP every 5 s (the whole configuration and policy again)
#   discovery  - the registry gains or loses an endpoint every second (the
#                discovery file is rewritten)
# and for each prints the worst answer latency and the queries lost, then the
# ratios of the worst latencies to the quiet run's.  Beside them, the longest
# round of the daemon's main loop (acrdns_loop_stall_seconds, "-" for builds
# without it): a worst latency far above it was the machine, not the daemon.
# Goals: ratios at most 2, worst under 10 ms, nothing lost.
#
# With ACRDNSD_BASE set to another build (say, main's), the same runs are made
# with it too, taking turns with ACRDNSD, so that both are measured in the
# same window: on a shared machine absolute latencies move from minute to
# minute, and only figures taken side by side compare.
#
# Usage: tests/bench/reload.sh [seconds per run, default 20] [qps, default 10000]
# Needs: dnsperf unbound (Debian).
set -euo pipefail
[ -n "${BENCH_TRACE:-}" ] && set -x

DUR=${1:-20}
RATE=${2:-10000}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
top=$(cd "$here/../.." && pwd)
ACRDNSD=${ACRDNSD:-$top/daemon/acrdnsd}
ACRDNSCTL=${ACRDNSCTL:-$top/daemon/acrdnsctl}
PATH=$PATH:/usr/sbin
for tool in dnsperf unbound; do
	command -v $tool >/dev/null || { echo "reload bench: $tool is missing (apt-get install dnsperf unbound)" >&2; exit 1; }
done
for bin in "$ACRDNSD" ${ACRDNSD_BASE:+"$ACRDNSD_BASE"}; do
	[ -x "$bin" ] || { echo "reload bench: no acrdnsd at $bin (build it first)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/acrdns-reload.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
read -r UP ACR < <(free_ports 2)

upstream_conf $UP "$work" > "$work/upstream.conf"
unbound -d -c "$work/upstream.conf" 2> "$work/unbound.log" & pids+=($!)

awk 'BEGIN { for (i = 0; i < 1000000; i++) printf "deny r%d.big%d.example\n", i, i % 97 }' > "$work/million.rules"
for i in $(seq 1 100); do echo "host$i.bench.lan A"; done > "$work/cached.txt"
disc() { # endpoints for the discovery file, written whole and renamed into place
	local sep="" r
	{ printf '{"loginServer":"contoso.azurecr.io","dataEndpoints":['
	  for r in "$@"; do printf '%s{"region":"%s","endpoint":"contoso.%s.data.azurecr.io"}' "$sep" "$r" "$r"; sep=,; done
	  printf ']}\n'; } > "$work/contoso.json.new"
	mv "$work/contoso.json.new" "$work/contoso.json"
}

cat > "$work/acrdnsd.conf" <<CONF
listen = [ "127.0.0.1:$ACR" ];
upstreams = [ "127.0.0.1:$UP" ];
mode = "filter";
rules = [ "$work/million.rules" ];
registries = ( { login_server = "contoso.azurecr.io";
                 discovery = { source = "file"; path = "$work/contoso.json"; interval = 300; }; } );
state_dir = "$work/state";
cache = { size = "64M"; };
log = { level = "notice"; queries = "none"; };
control_socket = "$work/control.sock";
user = "root";   # the benchmark runs as root; its files are in a private directory
CONF

ACR_PID=
start_acrdnsd() { # binary
	rm -f "$work/control.sock" "$work/state"/*.json 2>/dev/null || true
	disc eastus
	"$1" -f -c "$work/acrdnsd.conf" 2> "$work/acrdnsd.log" & ACR_PID=$!; pids+=($ACR_PID)
	local i
	for i in $(seq 1 3000); do [ -S "$work/control.sock" ] && break; sleep 0.01; done
	[ -S "$work/control.sock" ] || { echo "reload bench: $1 did not start" >&2; cat "$work/acrdnsd.log" >&2; exit 1; }
	dnsperf -s 127.0.0.1 -p $ACR -d "$work/cached.txt" -n 2 >/dev/null 2>&1   # cache the 100 names
}
stop_acrdnsd() {
	kill "$ACR_PID"; wait "$ACR_PID" 2>/dev/null || true
}

# One run: dnsperf at the fixed rate while the changes named by $1 happen.
# Prints: worst latency in ms, queries lost, changes done, RSS, loop stall in ms.
run() { # quiet|reload|discovery
	local what=$1 t changes=0 flip=0
	dnsperf -s 127.0.0.1 -p $ACR -d "$work/cached.txt" -l "$DUR" -c 4 -q 500 -Q "$RATE" -t 5 \
		> "$work/perf.out" 2>&1 & local perf=$!
	local marks0 rss0 rss1
	rss0=$(awk '/VmRSS/ { print $2 }' "/proc/$ACR_PID/status")
	marks0=$(grep -c -E 'configuration reloaded|endpoint (added|removed)' "$work/acrdnsd.log" || true)
	for ((t = 1; t < DUR; t++)); do
		sleep 1
		case $what in
		reload) if ((t % 5 == 0)); then kill -HUP "$ACR_PID"; changes=$((changes + 1)); fi ;;
		discovery) if [ $flip = 0 ]; then disc eastus westus; flip=1; else disc eastus; flip=0; fi
			   changes=$((changes + 1)) ;;
		esac
	done
	wait $perf || true
	sleep 1   # the last change's log line
	rss1=$(awk '/VmRSS/ { print $2 }' "/proc/$ACR_PID/status")
	local done_marks stall
	stall=$("$ACRDNSCTL" -s "$work/control.sock" metrics 2>/dev/null |
		awk '/^acrdns_loop_stall_seconds / { printf "%.2f", $2 * 1000; found = 1 } END { if (!found) print "-" }')
	done_marks=$(( $(grep -c -E 'configuration reloaded|endpoint (added|removed)' "$work/acrdnsd.log" || true) - marks0 ))
	awk -v done="$done_marks" -v asked="$changes" -v r0="$rss0" -v r1="$rss1" -v stall="$stall" '
		/Queries lost/ { lost = $3 }
		/Average Latency/ { gsub(/[(),]/, ""); for (i = 1; i <= NF; i++) if ($i == "max") max = $(i + 1) }
		END { printf "%.2f %d %d/%d %.0f->%.0f %s\n", max * 1000, lost, done, asked, r0 / 1024, r1 / 1024, stall }' "$work/perf.out"
}

declare -A WORST LOST DONE
builds=("new:$ACRDNSD")
[ -n "${ACRDNSD_BASE:-}" ] && builds=("base:$ACRDNSD_BASE" "${builds[@]}")
echo "1,000,000 deny rules, 100 cached names at $RATE qps for $DUR s per run; a SIGHUP every 5 s; a discovery change every 1 s"
for what in quiet reload discovery; do
	for b in "${builds[@]}"; do
		name=${b%%:*} bin=${b#*:}
		start_acrdnsd "$bin"
		read -r w l d m st < <(run $what)
		stop_acrdnsd
		WORST[$name-$what]=$w LOST[$name-$what]=$l DONE[$name-$what]=$d
		printf '  %-5s %-10s worst %8.2f ms, lost %s, changes applied/asked %s, RSS MB %s, loop stall ms %s\n' \
			"$name" "$what" "$w" "$l" "$d" "$m" "$st"
	done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
printf '\n%-8s %14s %14s %14s %12s %12s %10s\n' build "quiet ms" "reload ms" "discovery ms" "reload/q" "disc./q" lost
for b in "${builds[@]}"; do
	name=${b%%:*}
	printf '%-8s %14s %14s %14s %12s %12s %10s\n' "$name" "${WORST[$name-quiet]}" "${WORST[$name-reload]}" \
		"${WORST[$name-discovery]}" "$(ratio "${WORST[$name-reload]}" "${WORST[$name-quiet]}")" \
		"$(ratio "${WORST[$name-discovery]}" "${WORST[$name-quiet]}")" \
		"$(( ${LOST[$name-quiet]} + ${LOST[$name-reload]} + ${LOST[$name-discovery]} ))"
done
echo "worst = dnsperf's max latency over the run; goals: reload/q and disc./q <= 2, worst < 10 ms, lost 0"
