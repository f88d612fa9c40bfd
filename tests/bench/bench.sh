#!/bin/bash
# Benchmark acrdnsd against unbound, dnsmasq and dnsdist, in one run, on this machine.
#
# All forward to the same local upstream (an unbound instance that answers
# every name under bench.lan. from local data), and dnsperf measures, for each:
#   cached QPS      - a few names, all cached after a warm-up, as fast as it goes
#   CPU/query       - the server's own CPU time per cached query at a fixed rate
#   forwarding QPS  - every name unique, so every query goes upstream
#                     (dnsdist, a load balancer without a cache here, only this)
# then, for acrdnsd alone:
#   callgrind       - instructions per cached query with the shipped rules, and
#                     with one million more (lookup cost must not depend on it)
#   1M rules        - load time and resident memory of a million-rule policy
#   cache memory    - resident memory the cache adds once full, against `size`
# and prints ratios: absolute numbers move from machine to machine, ratios
# from one run do not.  Needs: dnsperf unbound dnsmasq-base dnsdist valgrind (Debian).
#
# Usage: tests/bench/bench.sh [seconds per measurement, default 10] [fixed rate, default 20000]
set -euo pipefail
[ -n "${BENCH_TRACE:-}" ] && set -x

DUR=${1:-10}
RATE=${2:-20000}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
top=$(cd "$here/../.." && pwd)
ACRDNSD=${ACRDNSD:-$top/daemon/acrdnsd}
for tool in dnsperf unbound dnsmasq dnsdist; do
	command -v $tool >/dev/null || [ -x /usr/sbin/$tool ] || {
		echo "bench: $tool is missing (apt-get install dnsperf unbound dnsmasq-base dnsdist valgrind)" >&2; exit 1; }
done
[ -x "$ACRDNSD" ] || { echo "bench: build acrdnsd first ($ACRDNSD)" >&2; exit 1; }
PATH=$PATH:/usr/sbin

work=$(mktemp -d /tmp/acrdns-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# Ports nobody listens on now: fixed ones collide when two runs share the machine.
read -r UP ACR UNB DMQ DDI ACR1 < <(free_ports 6)

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

# dnsdist: one backend forced up (its health check asks a name the upstream
# does not serve), no packet cache, one listener thread as the others.
cat > "$work/dnsdist.conf" <<CONF
setLocal("127.0.0.1:$DDI")
setACL({"127.0.0.0/8"})
newServer({address="127.0.0.1:$UP"})
getServer(0):setUp()
setSecurityPollSuffix("")
CONF
dnsdist --supervised --disable-syslog -C "$work/dnsdist.conf" >/dev/null 2>&1 & pids+=($!); DDI_PID=$!

# The benchmark runs as root; the files are in a private directory.
cat > "$work/acrdnsd.conf" <<CONF
listen = [ "127.0.0.1:$ACR" ];
upstreams = [ "127.0.0.1:$UP" ];
mode = "filter";
rules = [ "$top/rules/*.rules" ];
cache = { size = "64M"; };
log = { level = "warning"; queries = "none"; };
control_socket = "$work/control.sock";
user = "root";
CONF
"$ACRDNSD" -f -c "$work/acrdnsd.conf" & pids+=($!); ACR_PID=$!
# The same with one event loop per CPU, for the `workers` comparison.
sed -e "s|127.0.0.1:$ACR|127.0.0.1:$ACR1|" -e "s|$work/control.sock|$work/control1.sock|" \
	"$work/acrdnsd.conf" > "$work/acrdnsd1.conf"
echo "workers = 0;" >> "$work/acrdnsd1.conf"
"$ACRDNSD" -f -c "$work/acrdnsd1.conf" & pids+=($!); ACR1_PID=$!
sleep 1

# ---- query files ----
for i in $(seq 1 100); do echo "host$i.bench.lan A"; done > "$work/cached.txt"
awk 'BEGIN { srand(42); for (i = 0; i < 1500000; i++) printf "m%d-%d.bench.lan A\n", i, int(rand() * 1e9) }' > "$work/miss.txt"
# Forwarding rounds: every round of every server asks names never asked before.
miss_names() { # prefix > file
	awk -v p="$1" 'BEGIN { for (i = 0; i < 2000000; i++) printf "%s%d.bench.lan A\n", p, i }'
}

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
PORT=([acrdnsd]=$ACR [unbound]=$UNB [dnsmasq]=$DMQ [dnsdist]=$DDI [acrdnsd1]=$ACR1)
PID=([acrdnsd]=$ACR_PID [unbound]=$UNB_PID [dnsmasq]=$DMQ_PID [dnsdist]=$DDI_PID [acrdnsd1]=$ACR1_PID)
SERVERS="acrdnsd unbound dnsmasq acrdnsd1"
for name in $SERVERS; do
	port=${PORT[$name]}
	perf $port "$work/cached.txt" 2 >/dev/null            # warm the cache
	QPS[$name]=$(perf $port "$work/cached.txt" "$DUR" | field "Queries per second")
done
# Forwarding: three rounds, the servers taking turns, each server's median,
# as for CPU below: on a shared 2-core machine one run of each moves by 30 %.
declare -A FSAMPLES
for round in 1 2 3; do
	for name in $SERVERS dnsdist; do
		miss_names "r$round-$name-" > "$work/miss-round.txt"
		out=$(perf ${PORT[$name]} "$work/miss-round.txt" "$DUR")
		FSAMPLES[$name]+="$(echo "$out" | field "Queries per second") "
		LOST[$name]=$(( ${LOST[$name]:-0} + $(echo "$out" | field "Queries lost") ))
	done
done
for name in $SERVERS dnsdist; do
	FWD[$name]=$(tr ' ' '\n' <<< "${FSAMPLES[$name]}" | grep . | sort -n | sed -n 2p)
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
printf '%-28s %12.0f %12s %12s %14s\n' "forwarding QPS vs dnsdist" "${FWD[acrdnsd]}" "dnsdist:" "$(printf %.0f "${FWD[dnsdist]}")" \
	"$(ratio "${FWD[acrdnsd]}" "${FWD[dnsdist]}") (acrdnsd/dnsdist; lost ${LOST[dnsdist]})"
printf 'CPU/query: median of three interleaved rounds (%s| %s| %s); lower is better.\n' \
	"${SAMPLES[acrdnsd]}" "${SAMPLES[unbound]}" "${SAMPLES[dnsmasq]}"
printf 'forwarding QPS: median of three interleaved rounds (acrdnsd %s| unbound %s| dnsmasq %s| dnsdist %s)\n' \
	"${FSAMPLES[acrdnsd]}" "${FSAMPLES[unbound]}" "${FSAMPLES[dnsmasq]}" "${FSAMPLES[dnsdist]}"
loops=$(grep -c ^processor /proc/cpuinfo)
printf 'workers: acrdnsd with %s event loops (workers = 0) / with 1 (default): cached QPS %.0f / %.0f (%s), CPU us/query %s / %s, forwarding QPS %.0f / %.0f\n' \
	"$loops" "${QPS[acrdnsd1]}" "${QPS[acrdnsd]}" "$(ratio "${QPS[acrdnsd1]}" "${QPS[acrdnsd]}")" \
	"${CPU[acrdnsd1]}" "${CPU[acrdnsd]}" "${FWD[acrdnsd1]}" "${FWD[acrdnsd]}"

# ---- instructions per cached query, for spotting regressions ----
kill "$ACR_PID" "$ACR1_PID"; wait "$ACR_PID" "$ACR1_PID" 2>/dev/null || true
# One million deny rules beside the shipped ones: the lookup must cost the same.
awk 'BEGIN { for (i = 0; i < 1000000; i++) printf "deny *.t%d.example%d.net\n", i, i % 97 }' > "$work/million.rules"
sed -e "s|rules = \\[ \"$top/rules/\\*.rules\" \\];|rules = [ \"$top/rules/*.rules\", \"$work/million.rules\" ];|" \
	"$work/acrdnsd.conf" > "$work/million.conf"
grep -q million.rules "$work/million.conf" || { echo "bench: could not write million.conf" >&2; exit 1; }

# valgrind 3.19 cannot read the DWARF 5 that clang 14 writes and stops at
# start-up: callgrind runs a copy without the debug sections, which executes
# the same instructions.
objcopy --strip-debug "$ACRDNSD" "$work/acrdnsd.nodebug"
callgrind_per_query() { # config file: instructions per cached query
	valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" "$work/acrdnsd.nodebug" -f -c "$1" \
		2> "$work/callgrind.log" & local cg=$!
	pids+=($cg)
	local i
	for i in $(seq 1 3000); do [ -S "$work/control.sock" ] && break; sleep 0.1; done   # 1M rules: minutes
	sleep 1
	dnsperf -s 127.0.0.1 -p $ACR -d "$work/cached.txt" -n 1 >/dev/null 2>&1          # 100 misses, cached
	callgrind_control -z "$cg" >/dev/null 2>&1 || true
	dnsperf -s 127.0.0.1 -p $ACR -d "$work/cached.txt" -n 200 -Q 2000 >/dev/null 2>&1  # 20000 hits
	kill -TERM "$cg"; wait "$cg" 2>/dev/null || true
	local ir
	ir=$(awk '/^summary:/ { print $2 }' "$work"/cg.out* 2>/dev/null | sort -n | tail -1)
	rm -f "$work"/cg.out* "$work/control.sock"
	if [ -z "$ir" ]; then
		echo "bench: callgrind measured nothing; its log:" >&2
		tail -5 "$work/callgrind.log" >&2
		echo 0
		return
	fi
	echo $((ir / 20000))
}
if command -v valgrind >/dev/null; then
	few=$(callgrind_per_query "$work/acrdnsd.conf")
	many=$(callgrind_per_query "$work/million.conf")
	printf 'callgrind: %d instructions per cached query with the shipped rules (%d), %d with 1,000,000 more (ratio %s)\n' \
		"$few" "$(cat "$top"/rules/*.rules | grep -c '^[a-z]')" "$many" "$(ratio "$many" "$few")"
fi

# ---- a million rules: load time and memory ----
rss_kb() { awk '/VmRSS/ { print $2 }' "/proc/$1/status"; }
wait_started() { # the control socket appears once the policy is loaded and the sockets open
	local i
	for i in $(seq 1 2000); do [ -S "$work/control.sock" ] && return 0; sleep 0.01; done
	echo "bench: acrdnsd did not start" >&2
	return 1
}
t0=$(date +%s.%N)
"$ACRDNSD" -f -c "$work/acrdnsd.conf" 2> "$work/few.log" & p=$!; pids+=($p)
wait_started; t1=$(date +%s.%N); rss_few=$(rss_kb $p)
kill $p; wait $p 2>/dev/null || true
rm -f "$work/control.sock"
t2=$(date +%s.%N)
"$ACRDNSD" -f -c "$work/million.conf" 2> "$work/many.log" & p=$!; pids+=($p)
wait_started; t3=$(date +%s.%N); rss_many=$(rss_kb $p)
kill $p; wait $p 2>/dev/null || true
rm -f "$work/control.sock"
awk -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" -v r1="$rss_few" -v r2="$rss_many" 'BEGIN {
	printf "1M rules: start-up %.2f s (shipped rules: %.2f s), RSS %.1f MB (shipped rules: %.1f MB)\n",
		d - c, b - a, r2 / 1024, r1 / 1024 }'

# ---- the cache's real memory once full ----
SIZE_MB=32
sed -e "s|size = \"64M\"|size = \"${SIZE_MB}M\"|" "$work/acrdnsd.conf" > "$work/mem.conf"
"$ACRDNSD" -f -c "$work/mem.conf" 2> "$work/mem.log" & p=$!; pids+=($p)
wait_started
dnsperf -s 127.0.0.1 -p $ACR -d "$work/cached.txt" -n 1 >/dev/null 2>&1
rss0=$(rss_kb $p)
ACRDNSCTL=${ACRDNSCTL:-$(dirname "$ACRDNSD")/acrdnsctl}
cache_bytes() { "$ACRDNSCTL" -s "$work/control.sock" --json status | awk -F'[:,]' '/cache_bytes/ { gsub(/ /, "", $2); print $2 }'; }
# Fill with unique names until the cache evicts, then keep churning as long again.
for i in 1 2 3 4 5 6 7 8 9 10; do
	dnsperf -s 127.0.0.1 -p $ACR -d "$work/miss.txt" -l 5 -c 4 -q 200 >/dev/null 2>&1
	[ "$(cache_bytes)" -ge $((SIZE_MB * 1024 * 1024 * 95 / 100)) ] && break
done
dnsperf -s 127.0.0.1 -p $ACR -d "$work/miss.txt" -l 10 -c 4 -q 200 >/dev/null 2>&1
rss1=$(rss_kb $p)
cb=$(cache_bytes)
entries=$("$ACRDNSCTL" -s "$work/control.sock" --json status | awk -F'[:,]' '/cache_entries/ { gsub(/ /, "", $2); print $2 }')
kill $p; wait $p 2>/dev/null || true
awk -v s="$SIZE_MB" -v r0="$rss0" -v r1="$rss1" -v cb="$cb" -v n="$entries" 'BEGIN {
	grow = (r1 - r0) / 1024
	printf "cache memory: size %d MiB, accounted %.1f MiB in %d entries, RSS %.1f -> %.1f MB: the full cache adds %.1f MiB = %.2f x size\n",
		s, cb / 1048576, n, r0 / 1024, r1 / 1024, grow, grow / s }'
