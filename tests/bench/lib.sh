# Shared by bench.sh, load.sh and reload.sh: unbound configurations on loopback, free ports.
# unbound_conf PORT WORKDIR [server lines...] > file
#   the server: section with no daemon, chroot, user or logging, then the
#   extra lines given (one argument per line).
unbound_conf() {
	local port=$1 dir=$2; shift 2
	cat <<CONF
server:
  interface: 127.0.0.1@$port
  port: $port
  num-threads: 1
  do-daemonize: no
  chroot: ""
  username: ""
  directory: "$dir"
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 0
  access-control: 127.0.0.0/8 allow
CONF
	local line
	for line in "$@"; do printf '  %s\n' "$line"; done
}

# The shared upstream: every name under bench.lan (and azurecr.io) answered
# from local data, so that it is never the bottleneck of a forwarder.
upstream_conf() {
	unbound_conf "$1" "$2" \
		'local-zone: "bench.lan." redirect' \
		'local-data: "bench.lan. 3600 IN A 192.0.2.1"' \
		'local-data: "bench.lan. 3600 IN AAAA 2001:db8::1"' \
		'local-zone: "azurecr.io." redirect' \
		'local-data: "azurecr.io. 3600 IN A 192.0.2.2"'
	printf 'remote-control:\n  control-enable: no\n'
}

# free_ports N: N distinct ports with no TCP or UDP socket bound on them now,
# below the ephemeral range (so that no client socket takes one meanwhile),
# picked at random so that runs started side by side do not pick the same.
free_ports() {
	local n=$1 used p picked=()
	used=" $(ss -Hantu 2>/dev/null | awk '{ n = split($5, a, ":"); print a[n] }' | sort -u | tr '\n' ' ') "
	while [ ${#picked[@]} -lt "$n" ]; do
		p=$((20000 + RANDOM % 12000))
		[[ $used == *" $p "* || " ${picked[*]} " == *" $p "* ]] || picked+=("$p")
	done
	echo "${picked[@]}"
}
