#!/bin/bash
# What the README tells a user to do with the Debian package, under a real
# systemd: a Debian 12 root (cached, see lib.sh) booted with systemd-nspawn
# on a network of its own (loopback only), the package installed, enabled,
# queried, reloaded, given a bad configuration, its watchdog tripped, the
# container rebooted, the package removed and purged.  Prints one TAP-like
# line per step; exit 0, 1 (a step failed) or 77 (cannot run here, says why).
#
# usage: tests/system/boot.sh PATH/acrdns_VERSION_ARCH.deb
set -uo pipefail
. "$(dirname "$0")/lib.sh"

deb=$(readlink -f "${1:?usage: boot.sh PACKAGE.deb}")
require_tools debootstrap systemd-nspawn nsenter
[ -d /sys/fs/cgroup ] || skip "no cgroup file system: systemd cannot boot here"
ensure_root || exit 1

# One run at a time per cache: the run's root is $CACHE/run.
exec 8> "$CACHE/boot.lock"
flock -n 8 || skip "another boot.sh runs on $CACHE"
work="$CACHE/run"
console="$CACHE/console.log"
rm -rf "$work"
cp -a --reflink=auto "$CACHE/root" "$work" || exit 1
mkdir -p "$work/opt/acrdns-pkg" "$work/opt/acrdns-test"
cp "$deb" "$work/opt/acrdns-pkg/"
cp "$SRCDIR/tests/system/upstream.py" "$work/opt/acrdns-test/"

NSPAWN=
LEADER=

# Boot $work; LEADER is the container's PID 1.
boot() {
	: > "$console"
	systemd-nspawn -q -b -D "$work" --keep-unit --register=no --private-network \
		--machine=acrdns-test < /dev/null >> "$console" 2>&1 &
	NSPAWN=$!
	LEADER=
	for _ in $(seq 300); do
		LEADER=$(cat "/proc/$NSPAWN/task/$NSPAWN/children" 2>/dev/null | awk '{print $1}')
		[ -n "$LEADER" ] && [ "$(cat "/proc/$LEADER/comm" 2>/dev/null)" = systemd ] && break
		kill -0 "$NSPAWN" 2>/dev/null || break
		LEADER=
		sleep 0.1
	done
	if [ -z "$LEADER" ]; then
		tail -20 "$console"
		wait_down
		skip "systemd-nspawn -b could not boot a container here (console: $console)"
	fi
	local state
	# systemctl needs PID 1's private socket, made early in the boot.
	poll 60 in_ct test -S /run/systemd/private
	state=$(in_ct timeout 120 systemctl is-system-running --wait)
	case $state in
	running|degraded) ok "boot: systemd reached $state" ;;
	*) notok "boot" "systemd is $state"; in_ct systemctl --failed --no-pager; finish ;;
	esac
}

# Run a command inside the container (PID 1's namespaces, a clean environment).
in_ct() {
	nsenter -t "$LEADER" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"
}

# Wait for the container to stop (poweroff or reboot).
wait_down() {
	for _ in $(seq 600); do
		kill -0 "$NSPAWN" 2>/dev/null || { wait "$NSPAWN" 2>/dev/null; return 0; }
		sleep 0.1
	done
	# Killing the container's PID 1 ends its PID namespace, then nspawn.
	[ -n "$LEADER" ] && kill -9 "$LEADER" 2>/dev/null
	wait "$NSPAWN" 2>/dev/null
	return 1
}

finish() {
	if [ "$failed" != 0 ] && [ -n "$LEADER" ] && kill -0 "$NSPAWN" 2>/dev/null; then
		echo "# journal of acrdnsd.service:"
		in_ct journalctl -u acrdnsd --no-pager -n 40 | sed 's/^/#   /'
	fi
	if [ -n "$NSPAWN" ] && kill -0 "$NSPAWN" 2>/dev/null; then
		in_ct systemctl poweroff >/dev/null 2>&1 || true
		wait_down || true
	fi
	rm -rf "$work"
	echo "# $step_n steps, $([ "$failed" = 0 ] && echo "all passed" || echo "some failed")"
	exit "$failed"
}
trap 'echo "# interrupted"; failed=1; finish' INT TERM

# dig's answer (+short) or status for a name, from inside.
answer() { in_ct dig +time=3 +tries=1 +short @127.0.0.1 "$1" A; }
status() { in_ct dig +time=3 +tries=1 @127.0.0.1 "$1" A | sed -n 's/.*status: \([A-Z]*\),.*/\1/p'; }
prop() { in_ct systemctl show -P "$1" acrdnsd.service; }

# Poll CMD... until it succeeds, for at most $1 seconds.
poll() {
	local limit=$(($1 * 10)) i
	shift
	for ((i = 0; i < limit; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}

start_upstream() {
	in_ct rm -f /run/upstream.log
	in_ct systemd-run --quiet --unit=upstream python3 /opt/acrdns-test/upstream.py 127.0.0.1 5300 \
		/run/upstream.log
	poll 20 in_ct grep -qx ready /run/upstream.log
}
forwarded() { in_ct grep -qix "$1." /run/upstream.log; }

CONF='listen = [ "127.0.0.1:53" ];
upstreams = [ "127.0.0.1:5300" ];
rules = [ "rules.d/azure-storage.rules", "rules.d/registries.rules",
          "rules.d/object-storage.rules", "rules.d/doh-canary.rules" ];
registries = (
  { login_server = "contoso.azurecr.io";
    data_endpoints = [ "contoso.eastus.data.azurecr.io" ];
    discovery = { source = "file"; path = "/etc/acrdns/contoso.json"; interval = 60; };
  }
);'
put() { in_ct sh -c "cat > '$1'"; }

echo "# package: $(basename "$deb"); root: $CACHE/root"
boot

# ---- install: nothing starts ----
if in_ct dpkg -i "/opt/acrdns-pkg/$(basename "$deb")" > "$CACHE/dpkg.log" 2>&1; then
	ok "dpkg -i installs the package with the root's libraries, without network"
else
	notok "dpkg -i" "$(tail -5 "$CACHE/dpkg.log")"
	finish
fi
en=$(in_ct systemctl is-enabled acrdnsd.service acrdnsd.socket | tr '\n' ' ')
act=$(in_ct systemctl is-active acrdnsd.service acrdnsd.socket | tr '\n' ' ')
if [ "$en" = "disabled disabled " ] && [ "$act" = "inactive inactive " ]; then
	ok "installed, nothing enabled or started (enabled: $en; active: $act)"
else
	notok "install starts nothing" "enabled: $en; active: $act"
fi
if in_ct getent passwd acrdns >/dev/null && in_ct test -d /var/lib/acrdns -a -d /run/acrdns; then
	ok "sysusers and tmpfiles: user acrdns, /var/lib/acrdns, /run/acrdns"
else
	notok "sysusers and tmpfiles" "$(in_ct ls -ld /var/lib/acrdns /run/acrdns 2>&1)"
fi
bad=
for f in /etc/acrdns/acrdnsd.conf /usr/share/doc/acrdns/examples/acrdnsd.conf.example \
	 /usr/share/doc/acrdns/examples/airgap.conf /usr/share/doc/acrdns/examples/container.conf; do
	in_ct acrdnsd -t -c "$f" > /dev/null 2>&1 || bad="$bad $f"
done
if [ -z "$bad" ] && in_ct grep -q '^listen = \[ "127.0.0.1:53"' /etc/acrdns/acrdnsd.conf; then
	ok "acrdnsd -t passes on the installed configuration (port 53) and examples"
else
	notok "installed configurations" "fail acrdnsd -t:$bad"
fi
n=$(in_ct dpkg-query -W -f='${Conffiles}\n' acrdns | grep -c '/etc/acrdns/rules.d/.*\.rules')
files=$(in_ct dpkg -L acrdns | grep -c '^/etc/acrdns/rules.d/.*\.rules$')
[ "$n" = "$files" ] && [ "$n" -gt 0 ] && ok "the $n rule files in /etc/acrdns/rules.d are conffiles" ||
	notok "conffiles" "$n of $files rule files"

# ---- configure, enable, query ----
start_upstream && ok "scripted upstream on 127.0.0.1:5300" || { notok "upstream" ""; finish; }
echo "$CONF" | put /etc/acrdns/acrdnsd.conf
echo '{ "loginServer": "contoso.azurecr.io",
  "dataEndpoints": [ { "endpoint": "contoso.westeurope.data.azurecr.io" } ] }' | put /etc/acrdns/contoso.json
if in_ct systemctl enable --now acrdnsd > /dev/null 2>&1 && [ "$(prop ActiveState)" = active ]; then
	ok "systemctl enable --now acrdnsd: active, \"$(prop StatusText)\""
else
	notok "enable --now" "$(prop ActiveState) $(prop Result)"
	finish
fi
started=$(in_ct journalctl -b -u acrdnsd -o cat --no-pager | grep -c 'started\|^configuration\|^rules:')
[ "$started" = 1 ] && ok "one summary line in the journal at start" ||
	notok "one line at start" "$started lines"
a=$(answer contoso.azurecr.io)
[ "$a" = 10.0.0.5 ] && forwarded contoso.azurecr.io && ok "allowed: contoso.azurecr.io -> $a (forwarded)" ||
	notok "allowed name" "answer '$a'"
if poll 20 in_ct test -s /var/lib/acrdns/contoso.azurecr.io.json &&
   [ "$(answer contoso.westeurope.data.azurecr.io)" = 10.0.0.7 ]; then
	ok "discovered endpoint contoso.westeurope.data.azurecr.io answered, set saved in /var/lib/acrdns"
else
	notok "discovery" "$(in_ct acrdnsctl endpoints 2>&1 | tr '\n' ' ')"
fi
s=$(status evil.blob.core.windows.net)
if [ "$s" = NXDOMAIN ] && ! forwarded evil.blob.core.windows.net; then
	ok "denied: evil.blob.core.windows.net -> NXDOMAIN, never forwarded"
else
	notok "denied name" "status '$s', forwarded: $(forwarded evil.blob.core.windows.net && echo yes || echo no)"
fi
s=$(status example.org)
[ "$s" = NXDOMAIN ] && ok "allowlist: example.org -> NXDOMAIN" || notok "allowlist" "status '$s'"

# ---- reload, good and bad ----
printf '%s\nallow = [ "example.org" ];\n' "$CONF" | put /etc/acrdns/acrdnsd.conf
if in_ct systemctl reload acrdnsd && [ "$(answer example.org)" = 10.9.9.9 ]; then
	ok "systemctl reload with allow example.org: now answered"
else
	notok "good reload" "$(in_ct journalctl -u acrdnsd -n 3 -o cat --no-pager | tr '\n' ' ')"
fi
printf '%s\nmode = "sideways";\n' "$CONF" | put /etc/acrdns/acrdnsd.conf
pid=$(prop MainPID)
if ! in_ct systemctl reload acrdnsd 2>/dev/null && [ "$(prop ActiveState)" = active ] &&
   [ "$(prop MainPID)" = "$pid" ] && [ "$(answer example.org)" = 10.9.9.9 ]; then
	ok "systemctl reload of a bad configuration fails; the running one stays"
else
	notok "bad reload" "state $(prop ActiveState)"
fi
why=$(in_ct acrdnsctl reload 2>&1)
errs=$(in_ct journalctl -u acrdnsd -p err -o cat --no-pager)
if [[ $why == *"'mode' is 'sideways'"* ]] && [[ $errs == *"'mode' is 'sideways'"* ]]; then
	ok "the reason: acrdnsctl reload and journalctl -p err say \"$(echo "$why" | head -1)\""
else
	notok "bad reload's reason" "acrdnsctl: $why; journal -p err: $errs"
fi

# ---- a bad configuration at start: not retried, not locked out ----
in_ct systemctl restart acrdnsd 2>/dev/null
poll 20 test "$(prop ActiveState)" = failed
st=$(prop ExecMainStatus)
# RestartSec=1s: a restart would have happened within 3 s.
sleep 3
if [ "$(prop ActiveState)" = failed ] && [ "$st" = 78 ] && [ "$(prop NRestarts)" = 0 ]; then
	ok "restart with a bad configuration: failed with status 78, not restarted"
else
	notok "bad configuration at start" "state $(prop ActiveState), status $st, restarts $(prop NRestarts)"
fi
errs=$(in_ct journalctl -u acrdnsd -p err -o cat --no-pager -n 3)
[[ $errs == *"acrdnsd.conf:"*"'mode' is 'sideways'"* ]] && ok "journalctl -p err -u acrdnsd names the line" ||
	notok "start error at err" "$errs"
echo "$CONF" | put /etc/acrdns/acrdnsd.conf
if in_ct systemctl start acrdnsd && [ "$(prop ActiveState)" = active ] && [ "$(answer contoso.azurecr.io)" = 10.0.0.5 ]; then
	ok "fixed: systemctl start works at once (no start limit, no reset-failed)"
else
	notok "start after the fix" "$(prop ActiveState) $(prop Result)"
fi

# ---- the watchdog ----
in_ct mkdir -p /run/systemd/system/acrdnsd.service.d
printf '[Service]\nWatchdogSec=2s\nLimitCORE=0\n' | put /run/systemd/system/acrdnsd.service.d/watchdog.conf
in_ct systemctl daemon-reload
in_ct systemctl restart acrdnsd
pid=$(prop MainPID)
restarts=$(prop NRestarts)
sleep 5   # two and a half watchdog periods: a daemon that did not ping would be killed
if [ "$(prop MainPID)" = "$pid" ] && [ "$(prop ActiveState)" = active ]; then
	ok "watchdog (WatchdogSec=2s): a healthy daemon keeps running"
else
	notok "watchdog, healthy" "pid $pid -> $(prop MainPID)"
fi
in_ct systemctl kill --kill-who=main --signal=SIGSTOP acrdnsd
poll 30 test "$(prop NRestarts)" -gt "$restarts"
poll 20 test "$(prop ActiveState)" = active
poll 10 in_ct sh -c 'journalctl -u acrdnsd -o cat --no-pager | grep -q "Watchdog timeout"'
wd=$(in_ct journalctl -u acrdnsd -o cat --no-pager | grep -c "Watchdog timeout")
a=$(answer contoso.azurecr.io)
if [ "$(prop NRestarts)" -gt "$restarts" ] && [ "$(prop ActiveState)" = active ] &&
   [ "$(prop MainPID)" != "$pid" ] && [ "$wd" -ge 1 ] && [ "$a" = 10.0.0.5 ]; then
	ok "watchdog: a stopped daemon is killed and restarted (pid $pid -> $(prop MainPID)), answers again"
else
	notok "watchdog, stopped" "state $(prop ActiveState), restarts $(prop NRestarts), pid $pid -> $(prop MainPID), 'Watchdog timeout' lines $wd, answer '$a'"
fi
in_ct rm -rf /run/systemd/system/acrdnsd.service.d
in_ct systemctl daemon-reload

# ---- reboot: the saved endpoints without their source ----
in_ct rm /etc/acrdns/contoso.json
in_ct systemctl reboot
if wait_down; then ok "systemctl reboot: the container went down"; else notok "reboot" "still up"; fi
boot
start_upstream || notok "upstream after reboot" ""
eps=$(in_ct acrdnsctl endpoints 2>&1)
if poll 20 test "$(prop ActiveState)" = active &&
   [[ $eps == *"endpoint: contoso.westeurope.data.azurecr.io"* ]] &&
   [[ $eps == *"loaded from the set saved at"* ]] &&
   [ "$(answer contoso.westeurope.data.azurecr.io)" = 10.0.0.7 ]; then
	ok "after reboot: enabled unit active, saved endpoint answered without its source ($(echo "$eps" | grep 'last success' | sed 's/^ *//'))"
else
	notok "after reboot" "$(prop ActiveState); $eps"
fi

# ---- remove keeps the state, purge removes it ----
in_ct systemctl stop acrdnsd
if in_ct dpkg -r acrdns > /dev/null 2>&1 && in_ct test -s /var/lib/acrdns/contoso.azurecr.io.json &&
   ! in_ct test -e /usr/sbin/acrdnsd; then
	ok "dpkg -r: binaries gone, /var/lib/acrdns kept"
else
	notok "remove" "$(in_ct ls -la /var/lib/acrdns 2>&1 | tr '\n' ' ')"
fi
if in_ct dpkg -P acrdns > /dev/null 2>&1 && ! in_ct test -e /var/lib/acrdns && ! in_ct test -e /etc/acrdns; then
	ok "dpkg -P: /var/lib/acrdns and /etc/acrdns removed"
else
	notok "purge" "$(in_ct ls -la /var/lib/acrdns /etc/acrdns 2>&1 | tr '\n' ' ')"
fi
finish
