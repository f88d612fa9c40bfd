#!/bin/bash
# Benchmark acrdnsd against unbound and dnsmasq, in one run, on this machine.
#
# All three forward to the same local upstream (an unbound instance that
# answers every name under bench.lan. from local data), and dnsperf
# measures, for each:
#   cached QPS      - a few names, all cached after a warm-up, as fast as it goes
#   CPU/query       - the server's own CPU time per cached query at a fixed rate
#   forwarding QPS  - every name unique, so every query goes upstream
#   callgrind       - instructions per cached query (acrdnsd only; repeatable)
# and prints ratios: absolute numbers move from machine to machine, ratios
# from one run do not.  Needs: dnsperf unbound dnsmasq-base valgrind (Debian).
#
# Usage: tests/bench/bench.sh [seconds per measurement, default 10] [fixed rate, default 20000]
set -euo pipefail

DUR=${1:-10}
RATE=${2:-20000}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
top=$(cd "$here/../.." && pwd)
ACRDNSD=${ACRDNSD:-$top/daemon/acrdnsd}
for tool in dnsperf unbound dnsmasq; do
	command -v $tool >/dev/null || [ -x /usr/sbin/$tool ] || {
		echo "bench: $tool is missing (apt-get install dnsperf unbound dnsmasq-base valgrind)" >&2; exit 1; }
done
[ -x "$ACRDNSD" ] || { echo "bench: build acrdnsd first ($ACRDNSD)" >&2; exit 1; }
PATH=$PATH:/usr/sbin

work=$(mktemp -d /tmp/acrdns-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

UP=25353 ACR=25354 UNB=25355 DMQ=25356

# ---- the shared upstream ----
upstream_conf $UP "$work" > "$work/upstream.conf"
unbound -d -c "$work/upstream.conf" & pids+=($!)

# ---- the peers ----
{ unbound_conf $UNB "$work" 'do-not-query-localhost: no' 'module-config: "iterator"' \
	'msg-cache-size: 64m' 'rrset-cache-size: 64m' 'qname-minimisation: no'
  printf 'forward-zone:\n  name: "."\n  forward-addr: 127.0.0.1@%s\nremote-control:\n  control-enable: no\n' $UP
} > "$work/unbound.conf"
unbound -d -c "$work/unbound.conf" & pids+=($!); UNB_PID=$!

dnsmasq -k -C /dev/null -p $DMQ --listen-address=127.0.0.1 --bind-interfaces --no-resolv \
	--no-hosts --server=127.0.0.1#$UP --cache-size=10000 --dns-forward-max=1000 \
	--log-facility=/dev/null & pids+=($!); DMQ_PID=$!

cat > "$work/acrdnsd.conf" <<CONF
listen = [ "127.0.0.1:$ACR" ];
upstreams = [ "127.0.0.1:$UP" ];
mode = "filter";
rules = [ "$top/rules/*.rules" ];
cache = { size = "64M"; };
log = { level = "warning"; queries = "none"; };
CONF
"$ACRDNSD" -f -c "$work/acrdnsd.conf" & pids+=($!); ACR_PID=$!
sleep 1

# ---- query files ----
for i in $(seq 1 100); do echo "host$i.bench.lan A"; done > "$work/cached.txt"
awk 'BEGIN { srand(42); for (i = 0; i < 1500000; i++) printf "m%d-%d.bench.lan A\n", i, int(rand() * 1e9) }' > "$work/miss.txt"

# Server CPU during a run: perf's task-clock where perf works (exact), else
# the tick-sampled utime+stime from /proc, which is coarse on short runs.
cpu_ms_during() { # pid seconds outfile command...: run command > outfile, print server CPU ms
	local pid=$1 secs=$2 out=$3; shift 3
	if perf stat -e task-clock true >/dev/null 2>&1; then
		perf stat -e task-clock -p "$pid" -o "$work/perf.out" -- sleep "$secs" >/dev/null 2>&1 & local ps=$!
		"$@" > "$out"
		wait $ps
		awk '/task-clock/ { gsub(",", "", $1); print $1 }' "$work/perf.out"
	else
		local t0 t1
		t0=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
		"$@" > "$out"
		t1=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
		echo $(( (t1 - t0) * 1000 / $(getconf CLK_TCK) ))
	fi
}
perf() { dnsperf -s 127.0.0.1 -p "$1" -d "$2" -l "$3" -c 4 -q 200 ${4:+-Q $4} 2>/dev/null; }
field() { awk -v k="$1" '$0 ~ k { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9.]+$/) { print $i; exit } }'; }

declare -A QPS CPU FWD LOST PORT PID
PORT=([acrdnsd]=$ACR [unbound]=$UNB [dnsmasq]=$DMQ)
PID=([acrdnsd]=$ACR_PID [unbound]=$UNB_PID [dnsmasq]=$DMQ_PID)
SERVERS="acrdnsd unbound dnsmasq"
for name in $SERVERS; do
	port=${PORT[$name]}
	perf $port "$work/cached.txt" 2 >/dev/null            # warm the cache
	QPS[$name]=$(perf $port "$work/cached.txt" "$DUR" | field "Queries per second")
	out=$(perf $port "$work/miss.txt" "$DUR")
	FWD[$name]=$(echo "$out" | field "Queries per second")
	LOST[$name]=$(echo "$out" | field "Queries lost")
done
# CPU per cached query: three rounds, the servers taking turns, and each
# server's median, so that drift on a shared machine does not pick a winner.
declare -A SAMPLES
for round in 1 2 3; do
	for name in $SERVERS; do
		ms=$(cpu_ms_during ${PID[$name]} "$DUR" "$work/fixed.out" perf ${PORT[$name]} "$work/cached.txt" "$DUR" "$RATE")
		done_q=$(field "Queries completed" < "$work/fixed.out")
		SAMPLES[$name]+="$(awk -v ms="$ms" -v q="$done_q" 'BEGIN { printf "%.2f", ms * 1000 / q }') "
	done
done
for name in $SERVERS; do
	CPU[$name]=$(tr ' ' '\n' <<< "${SAMPLES[$name]}" | grep . | sort -n | sed -n 2p)
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
printf '\n%-28s %12s %12s %12s %14s %14s\n' "measure ($DUR s each)" acrdnsd unbound dnsmasq "acrdnsd/unbound" "acrdnsd/dnsmasq"
printf '%-28s %12.0f %12.0f %12.0f %14s %14s\n' "cached QPS" "${QPS[acrdnsd]}" "${QPS[unbound]}" "${QPS[dnsmasq]}" \
	"$(ratio "${QPS[acrdnsd]}" "${QPS[unbound]}")" "$(ratio "${QPS[acrdnsd]}" "${QPS[dnsmasq]}")"
printf '%-28s %12s %12s %12s %14s %14s\n' "CPU us/query at $RATE qps" "${CPU[acrdnsd]}" "${CPU[unbound]}" "${CPU[dnsmasq]}" \
	"$(ratio "${CPU[acrdnsd]}" "${CPU[unbound]}")" "$(ratio "${CPU[acrdnsd]}" "${CPU[dnsmasq]}")"
printf '%-28s %12.0f %12.0f %12.0f %14s %14s\n' "forwarding QPS (all miss)" "${FWD[acrdnsd]}" "${FWD[unbound]}" "${FWD[dnsmasq]}" \
	"$(ratio "${FWD[acrdnsd]}" "${FWD[unbound]}")" "$(ratio "${FWD[acrdnsd]}" "${FWD[dnsmasq]}")"
printf '%-28s %12s %12s %12s\n' "forwarding queries lost" "${LOST[acrdnsd]}" "${LOST[unbound]}" "${LOST[dnsmasq]}"
printf 'CPU/query: median of three interleaved rounds (%s| %s| %s); lower is better.\n' \
	"${SAMPLES[acrdnsd]}" "${SAMPLES[unbound]}" "${SAMPLES[dnsmasq]}"

# ---- instructions per cached query, for spotting regressions ----
if command -v valgrind >/dev/null; then
	kill "$ACR_PID"; wait "$ACR_PID" 2>/dev/null || true
	valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" "$ACRDNSD" -f -c "$work/acrdnsd.conf" 2>/dev/null & CG_PID=$!
	pids+=($CG_PID)
	sleep 3
	dnsperf -s 127.0.0.1 -p $ACR -d "$work/cached.txt" -n 1 >/dev/null 2>&1          # 100 misses, cached
	callgrind_control -z "$CG_PID" >/dev/null 2>&1 || true
	dnsperf -s 127.0.0.1 -p $ACR -d "$work/cached.txt" -n 200 -Q 2000 >/dev/null 2>&1  # 20000 hits
	kill -TERM "$CG_PID"; wait "$CG_PID" 2>/dev/null || true
	ir=$(awk '/^summary:/ { print $2 }' "$work"/cg.out* | sort -n | tail -1)
	printf 'callgrind: %s instructions for 20000 cached queries = %d per query (acrdnsd)\n' \
		"$ir" "$((ir / 20000))"
fi
