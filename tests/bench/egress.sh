#!/bin/bash
# What holding an answer until its nftables commit has completed costs.
#
# In a network namespace of its own, with the `acrdnsd --print-nft` ruleset
# loaded, acrdnsd forwards to a scripted upstream (tests/integration/dnsfake.py)
# that answers N registry data endpoints, two names per address.  Each pair is
# resolved in turn: the first answer carries an address new to the set and
# waits for the commit, the second is forwarded the same way but its address
# is in the set already.  Prints the median and 90th percentile of each and
# their difference, which is what a new address costs a client.
# Needs root, ip(8), nft(8) and Debian's python3 with dnspython.
#
# Usage: tests/bench/egress.sh [N, default 200]
set -euo pipefail
N=${1:-200}
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
ACRDNSD=${ACRDNSD:-$top/daemon/acrdnsd}
PY=/usr/bin/python3
ns=acrbench$$
work=$(mktemp -d)
cleanup() {
	[ -n "${pids:-}" ] && kill $pids 2>/dev/null || true
	ip netns del $ns 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

ip netns add $ns
ip netns exec $ns ip link set lo up
"$ACRDNSD" --print-nft > "$work/egress.nft"
ip netns exec $ns nft -f "$work/egress.nft"

records=() endpoints=""
for i in $(seq 0 $((N - 1))); do
	for k in a b; do
		records+=("contoso.r$i$k.data.azurecr.io A 10.$((i / 250)).$((i % 250)).1")
		endpoints+="\"contoso.r$i$k.data.azurecr.io\", "
	done
done
ip netns exec $ns $PY "$top/tests/integration/dnsfake.py" 127.0.0.1 "${records[@]}" > "$work/up.port" &
pids="$!"
for _ in $(seq 1 100); do [ -s "$work/up.port" ] && break; sleep 0.1; done
cat > "$work/acrdnsd.conf" <<EOF
user = "root";
listen = [ "127.0.0.1:53" ];
upstreams = [ "127.0.0.1:$(head -1 "$work/up.port")" ];
control_socket = "$work/control.sock";
state_dir = "$work";
registries = ( { login_server = "contoso.azurecr.io"; data_endpoints = [ ${endpoints%, } ]; } );
nftables = { table = "inet acrdns"; set4 = "allow4"; set6 = "allow6"; };
EOF
ip netns exec $ns "$ACRDNSD" -f -c "$work/acrdnsd.conf" 2> "$work/acrdnsd.log" &
pids+=" $!"
for _ in $(seq 1 100); do [ -S "$work/control.sock" ] && break; sleep 0.1; done

ip netns exec $ns $PY - "$N" <<'EOF'
import statistics, sys, time
import dns.message, dns.query
n = int(sys.argv[1])
took = {"a": [], "b": []}
for i in range(n):
    for k in "ab":
        q = dns.message.make_query(f"contoso.r{i}{k}.data.azurecr.io", "A")
        t = time.perf_counter()
        r = dns.query.udp(q, "127.0.0.1", port=53, timeout=5)
        took[k].append((time.perf_counter() - t) * 1000)
        assert r.answer, r
med = {k: statistics.median(v) for k, v in took.items()}
p90 = {k: sorted(v)[int(len(v) * 0.9)] for k, v in took.items()}
print(f"new address, held for the commit: median {med['a']:.2f} ms, p90 {p90['a']:.2f} ms")
print(f"address already in the set:       median {med['b']:.2f} ms, p90 {p90['b']:.2f} ms")
print(f"a new address costs {med['a'] - med['b']:.2f} ms (median, {n} names each)")
EOF
grep -E "^acrdns_nft_(answers|batches|errors)" <("$top/daemon/acrdnsctl" -s "$work/control.sock" metrics)
