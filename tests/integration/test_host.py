"""acrdnsd as the host's own resolver: the two set-ups acrdnsd(8) documents
(with and without systemd-resolved), the loops they make when the upstreams
are wrong, listen addresses that appear after start, and the probes that
tell a supervisor whether the daemon is alive and ready."""
import json
import os
import subprocess
import urllib.error
import urllib.request

import dns.rcode
import pytest

from conftest import ACRDNSCTL, ACRDNSD, free_port, wait_for
from dnsfake import FakeUpstream
from netns import Netns, in_netns, netns_or_skip, sh, veth
from stubfwd import StubForwarder

LOGIN = "contoso.azurecr.io"
EAST = "contoso.eastus.data.azurecr.io"
HERE = os.path.dirname(os.path.abspath(__file__))


def ctl(tmp_path, *args):
    return subprocess.run([ACRDNSCTL, "-s", str(tmp_path / "control.sock"), *args],
                          capture_output=True, text=True, timeout=120)


def stat(tmp_path, name):
    for line in ctl(tmp_path, "stats").stdout.splitlines():
        key, _, value = line.partition(" ")
        if key == name:
            return int(value)
    raise KeyError(name)


def http(url):
    """(status, body) of a GET, whatever the status."""
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def probe_names(up):
    with up.lock:
        return [q.name for q in up.probes]


# ---- loop detection, on loopback ----

@pytest.fixture
def stub():
    fwd = StubForwarder()
    yield fwd
    fwd.close()


def test_upstream_that_forwards_back_is_dropped_logged_counted(upstream, stub, daemon, tmp_path):
    upstream.set(LOGIN, records=[f"{LOGIN} A 20.62.0.1"])
    # The stub stands for systemd-resolved with DNS=127.0.0.1 while acrdnsd
    # was given the stub as an upstream (file:/etc/resolv.conf under resolved).
    d = daemon(f'''
access = [ "127.0.0.0/8" ];
upstreams = [ "{stub.addr}", "{upstream.addr}" ];
mode = "filter";
log = {{ level = "debug"; }};
''', start=False)
    stub.target = ("127.0.0.1", d.port)
    d.start()
    stub_name = f"127.0.0.1#{stub.port}"
    assert d.wait_log(f"upstream {stub_name} is a loop"), d.read_log()
    line = next(ln for ln in d.read_log().splitlines() if "is a loop" in ln)
    assert line.startswith("<3>"), line           # err
    assert f"came back to acrdnsd from 127.0.0.1#" in line
    assert stat(tmp_path, "upstream_loops") == 1
    assert "\nacrdns_upstream_loops_total 1\n" in ctl(tmp_path, "metrics").stdout
    status = ctl(tmp_path, "status").stdout
    assert f"upstream loop: {stub_name} leads back to acrdnsd; dropped" in status
    assert "upstream servers: 1\n" in status
    js = json.loads(ctl(tmp_path, "--json", "status").stdout)
    assert js["upstream_loops"] == [stub_name] and js["upstreams"] == 1 and js["ready"] is True
    # The real server got its own probe only: the one that came back through
    # the stub was answered here and never forwarded.
    assert len(probe_names(upstream)) == 1
    forwarded = stub.forwarded
    # Names now go to the real server, never to the loop.
    r = d.query(LOGIN)
    assert r.rcode() == dns.rcode.NOERROR and "20.62.0.1" in r.to_text()
    assert stub.forwarded == forwarded
    # A probe name from anyone is answered here, never forwarded.
    assert d.query("0123456789abcdef.acrdns-loop.test").rcode() == dns.rcode.NXDOMAIN
    assert d.query("x.acrdns-loop.test", "AAAA", tcp=True).rcode() == dns.rcode.NXDOMAIN
    assert len(probe_names(upstream)) == 1 and stub.forwarded == forwarded

    # A reload checks again, with fresh probes.
    d.reload()
    assert wait_for(lambda: stat(tmp_path, "upstream_loops") == 2)
    assert len(probe_names(upstream)) == 2


def test_only_a_loop_left_no_usable_upstream_not_ready(stub, daemon, tmp_path):
    mport = free_port()
    d = daemon(f'''
access = [ "127.0.0.0/8" ];
upstreams = [ "{stub.addr}" ];
mode = "filter";
metrics_listen = "127.0.0.1:{mport}";
''', start=False)
    stub.target = ("127.0.0.1", d.port)
    d.start()
    assert d.wait_log("no usable upstream server"), d.read_log()
    assert any(ln.startswith("<3>") and "no usable upstream server" in ln
               for ln in d.read_log().splitlines())
    status = ctl(tmp_path, "status").stdout
    assert "no usable upstream server" in status and "ready: no: no usable upstream server" in status
    code, body = http(f"http://127.0.0.1:{mport}/ready")
    assert code == 503, body
    assert "\n" not in body.rstrip("\n")
    assert "no usable upstream server" in json.loads(body)["reason"]
    assert http(f"http://127.0.0.1:{mport}/health")[0] == 200
    r = ctl(tmp_path, "wait-ready", "--timeout", "1")
    assert r.returncode == 1 and "no usable upstream server" in r.stderr, r
    assert d.query(LOGIN).rcode() == dns.rcode.SERVFAIL
    assert d.alive()


def test_check_mode_fails_without_usable_upstream(tmp_path):
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\n")
    conf = tmp_path / "acrdnsd.conf"
    conf.write_text(f'''listen = [ "127.0.0.1:53" ];
mode = "filter";
upstreams = [ "file:{resolv}" ];
''')
    r = subprocess.run([ACRDNSD, "-t", "-c", str(conf)], capture_output=True, text=True)
    assert r.returncode == 78, r.stdout
    assert f"{conf}:3: no usable upstream server: file:{resolv} names only this daemon's own " \
        "listeners" in r.stderr, r.stderr
    assert "/run/systemd/resolve/resolv.conf" in r.stderr
    resolv.write_text("nameserver 127.0.0.1\nnameserver 192.0.2.53\n")
    r = subprocess.run([ACRDNSD, "-t", "-c", str(conf)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# ---- the host's resolver, as glibc uses it, in a network namespace ----

@pytest.fixture
def host(tmp_path):
    """A namespace playing the host, reaching its "real" DNS server (a
    scripted upstream on port 53 in a second namespace) at 10.218.0.1."""
    netns_or_skip()
    tag = f"acrh{os.getpid() % 100000}"
    ns, dns_ns = Netns(tag), Netns(f"{tag}d")
    procs, real = [], None
    try:
        veth(dns_ns, "10.218.0.1/24", ns, "10.218.0.2/24", tag)
        real = in_netns(dns_ns, lambda: FakeUpstream("10.218.0.1", port=53))
        real.set(LOGIN, records=[f"{LOGIN} A 20.62.0.1", f"{LOGIN} AAAA 2001:db8::1"])
        real.set(EAST, records=[f"{EAST} A 20.60.0.1"])
        ns.real = real
        ns.procs = procs
        os.makedirs(f"/etc/netns/{tag}", exist_ok=True)
        yield ns
    finally:
        for p in procs:
            p.kill()
            p.wait()
        if real:
            real.close()
        ns.delete()
        dns_ns.delete()


def resolv_conf(ns, text):
    with open(f"/etc/netns/{ns.name}/resolv.conf", "w") as f:
        f.write(text + "options timeout:1 attempts:1\n")


def replace(path, text):
    """Write a new file over path, as systemd-resolved and resolvconf do."""
    tmp = path.with_suffix(".new")
    tmp.write_text(text)
    os.replace(tmp, path)


def start_in(ns, daemon, config):
    d = daemon(config, start=False)
    d.prefix = ["ip", "netns", "exec", ns.name]
    d.start()
    return d


HOST_CONFIG = '''
listen = [ "127.0.0.1:53" ];
access = [ "127.0.0.0/8" ];
upstreams = [ "file:{upstreams}" ];
rules = [ "@SRCDIR@/rules/azure-storage.rules", "@SRCDIR@/rules/registries.rules" ];
registries = ( {{ login_server = "{login}"; data_endpoints = [ "{east}" ]; }} );
log = {{ level = "debug"; }};
'''


def test_host_without_resolved_getent(host, daemon, tmp_path):
    # nameserver 127.0.0.1 in /etc/resolv.conf, acrdnsd's upstreams in a file of their own.
    resolv_conf(host, "nameserver 127.0.0.1\n")
    # The shipped default (file:/etc/resolv.conf) is now acrdnsd itself: -t says so.
    bad = tmp_path / "bad.conf"
    bad.write_text('listen = [ "127.0.0.1:53" ];\nupstreams = [ "file:/etc/resolv.conf" ];\n')
    r = host.run(ACRDNSD, "-t", "-c", str(bad), check=False)
    assert r.returncode != 0 and f"{bad}:2: no usable upstream server" in r.stderr, r.stderr

    ups = tmp_path / "upstreams.conf"
    ups.write_text("nameserver 10.218.0.1\n")
    d = start_in(host, daemon, HOST_CONFIG.format(upstreams=ups, login=LOGIN, east=EAST))
    assert wait_for(lambda: ctl(tmp_path, "ready").stdout == "ready\n")
    r = host.run("getent", "ahosts", LOGIN, check=False)
    assert r.returncode == 0 and "20.62.0.1" in r.stdout and "2001:db8::1" in r.stdout, r
    r = host.run("getent", "ahosts", "evil.blob.core.windows.net", check=False)
    assert r.returncode == 2
    assert not [n for n in host.real.names() if "blob.core.windows.net" in n]
    assert "is a loop" not in d.read_log()


def test_host_with_resolved_getent_and_loop_on_file_change(host, daemon, tmp_path):
    # /etc/resolv.conf names resolved's stub; the drop-in sends everything to acrdnsd.
    resolv_conf(host, "nameserver 127.0.0.53\n")
    stub = host.popen(["/usr/bin/python3", os.path.join(HERE, "stubfwd.py"),
                       "127.0.0.53", "53", "127.0.0.1", "53"], stdout=subprocess.PIPE, text=True)
    host.procs.append(stub)
    assert int(stub.stdout.readline()) == 53
    # acrdnsd's upstreams: where resolved keeps the real servers.
    real_servers = tmp_path / "resolve-resolv.conf"
    real_servers.write_text("nameserver 10.218.0.1\n")
    d = start_in(host, daemon, HOST_CONFIG.format(upstreams=real_servers, login=LOGIN, east=EAST))
    assert wait_for(lambda: ctl(tmp_path, "ready").stdout == "ready\n")
    r = host.run("getent", "ahosts", LOGIN, check=False)
    assert r.returncode == 0 and "20.62.0.1" in r.stdout, r

    # The file now names the stub (as /etc/resolv.conf would): a loop, found
    # when the file changes, and the daemon says so instead of hanging.
    replace(real_servers, "nameserver 127.0.0.53\n")
    assert d.wait_log("upstream 127.0.0.53#53 is a loop", timeout=10), d.read_log()
    assert d.wait_log("no usable upstream server")
    status = ctl(tmp_path, "status").stdout
    assert "upstream loop: 127.0.0.53#53 leads back to acrdnsd; dropped" in status
    assert "no usable upstream server" in status
    assert ctl(tmp_path, "wait-ready", "--timeout", "0.5").returncode == 1
    r = host.run("getent", "ahosts", EAST, check=False)
    assert r.returncode == 2
    # Every probe that reached the real server was sent to it, never forwarded.
    assert len(probe_names(host.real)) == 1

    # Fixed again: checked again, used again.
    replace(real_servers, "nameserver 10.218.0.1\n")
    r = ctl(tmp_path, "wait-ready", "--timeout", "10")
    assert r.returncode == 0, r.stderr
    r = host.run("getent", "ahosts", EAST, check=False)
    assert r.returncode == 0 and "20.60.0.1" in r.stdout, r


# ---- a listen address that appears after start ----

def test_listen_address_added_after_start(daemon, upstream, tmp_path):
    netns_or_skip()
    tag = f"acrb{os.getpid() % 100000}"
    ns = Netns(tag)
    host_if = None
    real = None
    try:
        # The bridge: our side has its address, the namespace's side none yet.
        host_if, ns_if = f"{tag}a", f"{tag}b"
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        sh("ip", "addr", "add", "10.219.0.1/24", "dev", host_if)
        sh("ip", "link", "set", host_if, "up")
        sh("ip", "link", "set", ns_if, "netns", ns.name)
        ns.run("ip", "link", "set", ns_if, "up")
        real = FakeUpstream("10.219.0.1")
        real.set(LOGIN, records=[f"{LOGIN} A 20.62.0.1"])
        d = daemon(f'''
listen = [ "10.219.0.2:53" ];
access = [ "10.219.0.0/24" ];
upstreams = [ "{real.addr}" ];
mode = "filter";
''', start=False)
        d.prefix = ["ip", "netns", "exec", ns.name]
        d.host, d.port = "10.219.0.2", 53
        d.start()
        assert d.alive()
        log = d.read_log()
        assert "listen 10.219.0.2#53: the address is not on any interface yet" in log, log
        assert next(ln for ln in log.splitlines() if "not on any interface" in ln).startswith("<4>")

        ns.run("ip", "addr", "add", "10.219.0.2/24", "dev", ns_if)

        def answered(tcp):
            try:
                return d.query(LOGIN, tcp=tcp, timeout=0.5).rcode() == dns.rcode.NOERROR
            except Exception:
                return False
        assert wait_for(lambda: answered(False), timeout=10)
        assert answered(True)
        assert real.count(LOGIN) >= 1
    finally:
        if real:
            real.close()
        ns.delete()
        if host_if:
            sh("ip", "link", "del", host_if, check=False)


# ---- health and readiness ----

def test_health_and_ready_follow_discovery(upstream, daemon, tmp_path):
    upstream.set(EAST, records=[f"{EAST} A 20.60.0.1"])
    mport = free_port()
    src = tmp_path / "contoso.json"
    d = daemon(f'''
access = [ "127.0.0.0/8" ];
upstreams = [ "{upstream.addr}" ];
state_dir = "{tmp_path}/state";
metrics_listen = "127.0.0.1:{mport}";
registries = ( {{ login_server = "{LOGIN}"; discovery = {{ source = "file"; path = "{src}"; interval = 300; }}; }} );
''')
    base = f"http://127.0.0.1:{mport}"
    code, body = http(base + "/health")
    assert code == 200 and json.loads(body)["status"] == "alive"
    # No endpoint set yet, saved or discovered: not ready, and why.
    code, body = http(base + "/ready")
    assert code == 503, body
    reason = json.loads(body)["reason"]
    assert f"registry {LOGIN} has no endpoint set yet" in reason
    r = ctl(tmp_path, "wait-ready", "--timeout", "0.3")
    assert r.returncode == 1 and f"registry {LOGIN} has no endpoint set yet" in r.stderr, r
    assert "acrdns_ready 0" in http(base + "/metrics")[1]

    # The document arrives: ready, and wait-ready returns at once.
    waiter = subprocess.Popen([ACRDNSCTL, "-s", str(tmp_path / "control.sock"), "wait-ready",
                               "--timeout", "30"], stdout=subprocess.PIPE, text=True)
    src.write_text(json.dumps({"loginServer": LOGIN,
                               "dataEndpoints": [{"region": "eastus", "endpoint": EAST}]}))
    assert waiter.wait(30) == 0 and waiter.stdout.read() == "ready\n"
    code, body = http(base + "/ready")
    assert code == 200 and json.loads(body)["status"] == "ready"
    assert "acrdns_ready 1" in http(base + "/metrics")[1]
    assert ctl(tmp_path, "ready").stdout == "ready\n"
    assert json.loads(ctl(tmp_path, "--json", "status").stdout)["ready"] is True


def test_wait_ready_before_the_daemon_listens(tmp_path):
    # Started by a script right after the daemon: the socket is not there yet.
    r = subprocess.run([ACRDNSCTL, "-s", str(tmp_path / "none.sock"), "wait-ready", "--timeout", "0.3"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 1 and "cannot reach acrdnsd" in r.stderr
    r = subprocess.run([ACRDNSCTL, "status", "--timeout", "3"], capture_output=True, text=True)
    assert r.returncode == 2 and "--timeout goes with wait-ready only" in r.stderr
