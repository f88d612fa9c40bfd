"""Reloads built off the event loop, and discovery changes that swap only the
registries' names: queries are answered while a reload is still reading its
rules (a FIFO the test holds open), `acrdnsctl reload` answers once the new
configuration is live, reloads asked meanwhile are coalesced, and a changed
endpoint list does not build the rule table again."""
import errno
import json
import os
import re
import signal
import subprocess
import time

import dns.rcode

from conftest import ACRDNSCTL, wait_for

LOGIN = "contoso.azurecr.io"
EAST, NORTH = (f"contoso.{r}.data.azurecr.io" for r in ("eastus", "northeurope"))


def doc(*endpoints):
    return json.dumps({"loginServer": LOGIN,
                       "dataEndpoints": [{"region": e.split(".")[1], "endpoint": e} for e in endpoints]})


def config(up, tmp_path, rules=""):
    return f'''
upstreams = [ "{up.addr}" ];
mode = "filter";
deny = [ "*.azurecr.io" ];
{rules}
registries = ( {{ login_server = "{LOGIN}";
                 discovery = {{ source = "file"; path = "{tmp_path}/contoso.json"; interval = 300; }}; }} );
state_dir = "{tmp_path}/state";
log = {{ level = "info"; queries = "none"; }};
'''


def ctl(d, *args):
    return subprocess.run([ACRDNSCTL, "-s", str(d.tmp / "control.sock"), *args],
                          capture_output=True, text=True, timeout=10)


def builds(d):
    """acrdns_policy_builds_total by table, from the daemon's metrics."""
    text = ctl(d, "metrics").stdout
    return {m[0]: int(m[1]) for m in re.findall(r'acrdns_policy_builds_total\{table="(\w+)"\} (\d+)', text)}


def open_writer(fifo, timeout=5.0):
    """Open the FIFO for writing once the daemon has opened it for reading."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as e:
            if e.errno != errno.ENXIO or time.monotonic() > deadline:
                raise
        time.sleep(0.02)


def answered(d, name, rcode=dns.rcode.NOERROR):
    return d.query(name, timeout=2.0).rcode() == rcode


def start(upstream, daemon, tmp_path):
    for i, name in enumerate(["cached.example", "fresh.example", "later.example", EAST, NORTH]):
        upstream.set(name, records=[f"{name} A 192.0.2.{i + 1}"])
    (tmp_path / "contoso.json").write_text(doc(EAST))
    d = daemon(config(upstream, tmp_path))
    assert wait_for(lambda: answered(d, EAST))
    assert answered(d, "cached.example") and answered(d, "later.example")
    fifo = tmp_path / "slow.rules"
    os.mkfifo(fifo)
    d.write_config(config(upstream, tmp_path, f'rules = [ "{fifo}" ];'))
    return d, fifo


def test_answers_go_on_while_a_slow_reload_builds(upstream, daemon, tmp_path):
    d, fifo = start(upstream, daemon, tmp_path)
    before = builds(d)
    reload = subprocess.Popen([ACRDNSCTL, "-s", str(tmp_path / "control.sock"), "reload"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    fd = open_writer(fifo)
    try:
        os.write(fd, b"deny later.example\n# the rest is still coming\n")
        # The build is reading the FIFO: the running policy answers, from the
        # cache, from upstream, and for names the new rules will deny.
        for _ in range(20):
            assert answered(d, "cached.example")
            assert answered(d, "later.example")
        assert answered(d, "fresh.example")
        # A discovery change meanwhile is live at once, and survives the swap.
        (tmp_path / "contoso.json").write_text(doc(EAST, NORTH))
        assert wait_for(lambda: answered(d, NORTH))
        assert reload.poll() is None, "acrdnsctl reload answered before the reload was live"
        assert "configuration reloaded" not in d.read_log()[d.log_start:]
    finally:
        os.close(fd)
    out, err = reload.communicate(timeout=10)
    assert reload.returncode == 0 and out == "reloaded\n", err
    # Live when acrdnsctl returns: the new rule decides, the discovered name stays.
    assert answered(d, "later.example", dns.rcode.NXDOMAIN)
    assert answered(d, NORTH) and answered(d, EAST) and answered(d, "cached.example")
    assert builds(d)["rules"] == before["rules"] + 1


def test_reloads_asked_during_a_build_run_once_after_it(upstream, daemon, tmp_path):
    d, fifo = start(upstream, daemon, tmp_path)
    before = builds(d)
    d.signal(signal.SIGHUP)
    fd = open_writer(fifo)
    # Asked while the first build reads: one more build after it, not three,
    # and acrdnsctl hears about the build that read the files after it asked.
    reload = subprocess.Popen([ACRDNSCTL, "-s", str(tmp_path / "control.sock"), "reload"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert d.wait_log("reload: one is being built; this one follows it")
    for n in (2, 3):   # one at a time: signals of a kind do not queue
        d.signal(signal.SIGHUP)
        assert wait_for(lambda: d.read_log().count("SIGHUP: reloading") == n)
    os.write(fd, b"allow ok.example\n")
    os.close(fd)
    assert d.wait_log("configuration reloaded")
    assert reload.poll() is None, "answered by the build that started before the request"
    fd = open_writer(fifo)   # the second build reads the file again
    os.write(fd, b"deny later.example\n")
    os.close(fd)
    out, err = reload.communicate(timeout=10)
    assert reload.returncode == 0 and out == "reloaded\n", err
    assert answered(d, "later.example", dns.rcode.NXDOMAIN)
    assert builds(d)["rules"] == before["rules"] + 2
    assert d.read_log().count("configuration reloaded") == 2


def test_a_failed_slow_reload_keeps_the_running_configuration(upstream, daemon, tmp_path):
    d, fifo = start(upstream, daemon, tmp_path)
    reload = subprocess.Popen([ACRDNSCTL, "-s", str(tmp_path / "control.sock"), "reload"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    fd = open_writer(fifo)
    os.write(fd, b"deny later.example\nblock this.example\n")
    os.close(fd)
    out, err = reload.communicate(timeout=10)
    assert reload.returncode == 1 and "reload failed" in err and "slow.rules:2:" in err
    assert answered(d, "later.example") and answered(d, EAST)


def test_discovery_change_swaps_only_the_registry_names(upstream, daemon, tmp_path):
    rules = tmp_path / "big.rules"
    rules.write_text("".join(f"deny r{i}.big{i % 7}.example\n" for i in range(2000)))
    upstream.set(EAST, records=[f"{EAST} A 192.0.2.1"])
    upstream.set(NORTH, records=[f"{NORTH} A 192.0.2.2"])
    (tmp_path / "contoso.json").write_text(doc(EAST))
    d = daemon(config(upstream, tmp_path, f'rules = [ "{rules}" ];'))
    assert wait_for(lambda: answered(d, EAST))
    assert answered(d, NORTH, dns.rcode.NXDOMAIN)
    before = builds(d)
    (tmp_path / "contoso.json").write_text(doc(EAST, NORTH))
    assert wait_for(lambda: answered(d, NORTH))
    after = builds(d)
    assert after["rules"] == before["rules"] == 1
    assert after["registry_names"] == before["registry_names"] + 1
    assert "registries' names swapped in (3); the 2001 rules stay as built" in d.read_log()
    assert answered(d, "r5.big5.example", dns.rcode.NXDOMAIN)
    # A removed endpoint goes the same way.
    (tmp_path / "contoso.json").write_text(doc(NORTH))
    assert wait_for(lambda: answered(d, EAST, dns.rcode.NXDOMAIN))
    assert builds(d) == {"rules": 1, "registry_names": before["registry_names"] + 2}


def test_time_on_the_loop_is_logged_and_exported(upstream, daemon, tmp_path):
    """What an operator has to tell a stall of the daemon's own from a busy
    machine: each change's time on the loop in the log, the longest round of
    the loop in the metrics."""
    for name in (EAST, NORTH):
        upstream.set(name, records=[f"{name} A 192.0.2.9"])
    (tmp_path / "contoso.json").write_text(doc(EAST))
    d = daemon(config(upstream, tmp_path))
    assert wait_for(lambda: answered(d, EAST))
    stall = re.search(r"^acrdns_loop_stall_seconds ([0-9.]+)$", ctl(d, "metrics").stdout, re.M)
    assert stall, "no acrdns_loop_stall_seconds in the metrics"
    assert float(stall.group(1)) >= 0
    r = ctl(d, "reload")
    assert r.returncode == 0, r.stderr
    assert d.wait_log("ms on the loop (names ")
    assert re.search(r"reload: [0-9.]+ ms on the loop \(names [0-9.]+, listeners", d.read_log())
    (tmp_path / "contoso.json").write_text(doc(EAST, NORTH))
    assert wait_for(lambda: answered(d, NORTH))
    assert re.search(r"discovery: registries' names swapped in \(\d+\); the \d+ rules stay as built; "
                     r"[0-9.]+ ms on the loop", d.read_log())
