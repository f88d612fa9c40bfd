"""Operations: the privilege drop, sd_notify and the watchdog, socket
activation, metrics (control socket and HTTP), JSON query logs, the
shipped systemd units, and the example configurations."""
import json
import os
import pathlib
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import dns.message
import dns.query
import dns.rcode
import pytest

from conftest import ctl, free_port, ACRDNSCTL, ACRDNSD, Daemon, LOGIN, SRCDIR

BUILDDIR = os.path.dirname(os.path.dirname(os.path.abspath(ACRDNSD)))
EAST = "contoso.eastus.data.azurecr.io"


def proc_status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            fields[k] = v.split()
    return fields


# ---- privileges ----

def require_root():
    if os.geteuid() != 0:
        pytest.skip("the privilege drop is tested from root")


def as_nobody(upstream, tmp_path, extra=""):
    """A configuration that runs as nobody, with extra lines."""
    return f'''
upstreams = [ "{upstream.addr}" ];
state_dir = "{tmp_path}/state";
user = "nobody";
{extra}
'''


def test_drops_to_named_user_with_no_capabilities(upstream, daemon, tmp_path):
    require_root()
    upstream.set(LOGIN, records=[f"{LOGIN} A 20.62.0.1"])
    nobody = pwd.getpwnam("nobody")
    d = daemon(as_nobody(upstream, tmp_path, f'registries = ( {{ login_server = "{LOGIN}"; }} );'))
    st = proc_status(d.proc.pid)
    assert st["Uid"] == [str(nobody.pw_uid)] * 4
    assert st["Gid"] == [str(nobody.pw_gid)] * 4
    assert st["Groups"] == []
    for cap in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
        assert int(st[cap][0], 16) == 0, cap
    assert st["NoNewPrivs"] == ["1"]
    assert "running as user nobody" in d.read_log()
    # It serves as before, and the state directory is its own.
    assert d.query(LOGIN).rcode() == dns.rcode.NOERROR
    assert os.stat(tmp_path / "state").st_uid == nobody.pw_uid


def test_group_is_taken_from_the_configuration(upstream, daemon, tmp_path):
    require_root()
    d = daemon(as_nobody(upstream, tmp_path, 'group = "nogroup";'))
    import grp
    assert proc_status(d.proc.pid)["Gid"] == [str(grp.getgrnam("nogroup").gr_gid)] * 4


def test_nftables_keeps_only_net_admin(upstream, daemon, tmp_path):
    require_root()
    d = daemon(as_nobody(upstream, tmp_path, f'nftables = {{ table = "inet acrdnstest{os.getpid()}"; }};'))
    st = proc_status(d.proc.pid)
    assert int(st["CapEff"][0], 16) == 1 << 12     # CAP_NET_ADMIN only
    assert int(st["CapPrm"][0], 16) == 1 << 12
    assert int(st["CapInh"][0], 16) == 0 and int(st["CapAmb"][0], 16) == 0


def test_unknown_user_is_a_clear_error(upstream, daemon, tmp_path):
    require_root()
    d = daemon(f'''
upstreams = [ "{upstream.addr}" ];
user = "no-such-user-acrdns";
''', start=False)
    d.exit_expected = True
    d.start(wait=False)
    assert d.proc.wait(10) != 0
    assert "user 'no-such-user-acrdns' does not exist" in d.read_log()


def test_root_only_when_told(upstream, daemon):
    require_root()
    d = daemon(f'upstreams = [ "{upstream.addr}" ];\nuser = "root";\n')
    assert proc_status(d.proc.pid)["Uid"][0] == "0"
    assert 'user = "root"' in d.read_log()


@pytest.fixture
def open_dir():
    """A directory the dropped user can read (pytest's are 0700 under root's)."""
    import tempfile
    path = tempfile.mkdtemp(prefix="acrdns-")
    os.chmod(path, 0o755)
    yield pathlib.Path(path)
    shutil.rmtree(path, ignore_errors=True)


def test_reload_adding_a_privileged_port_says_why(upstream, open_dir):
    require_root()
    conf = f'''
upstreams = [ "{upstream.addr}" ];
state_dir = "{open_dir}/state";
user = "nobody";
'''
    d = Daemon(open_dir, conf).start()
    os.chmod(d.conf, 0o644)
    try:
        run_privileged_reload(d, conf)
    finally:
        d.stop()


def run_privileged_reload(d, conf):
    d.reload(f'listen = [ "127.0.0.1:{d.port}", "127.83.0.1:53" ];\n' + conf)
    log = d.read_log()
    assert "reload failed" in log
    assert "127.83.0.1#53" in log and "CAP_NET_BIND_SERVICE" in log
    assert d.alive() and d.query(LOGIN) is not None


# ---- sd_notify, watchdog ----

def test_sd_notify_ready_reload_status_watchdog_stopping(upstream, daemon, tmp_path):
    sock_path = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(sock_path)
    listener.settimeout(5)
    d = daemon(f'''
upstreams = [ "{upstream.addr}" ];
registries = ( {{ login_server = "{LOGIN}"; data_endpoints = [ "{EAST}" ]; }} );
''', start=False)
    d.env = {"NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "400000"}
    d.start()

    def messages(until, limit=50):
        got = []
        for _ in range(limit):
            m = listener.recv(4096).decode()
            got.append(m)
            if until in m:
                return got
        raise AssertionError(f"no {until} in {got}")

    first = messages("READY=1")
    ready = [m for m in first if "READY=1" in m][0]
    assert "STATUS=serving: " in ready and "1 registries with 1 data endpoints" in ready
    assert f"MAINPID={d.proc.pid}" in ready
    # Pings at half the interval: at least two in 0.5 s.
    t0 = time.monotonic()
    pings = 0
    while time.monotonic() - t0 < 0.6:
        pings += "WATCHDOG=1" in listener.recv(4096).decode()
    assert pings >= 2

    d.signal(signal.SIGHUP)
    got = messages("READY=1")
    assert any("RELOADING=1" in m and "MONOTONIC_USEC=" in m for m in got)

    d.signal(signal.SIGTERM)
    messages("STOPPING=1")
    d.proc.wait(5)
    listener.close()


# ---- socket activation ----

def activate(tmp_path, conf_text, args, env_extra=None):
    conf = tmp_path / "activated.conf"
    conf.write_text(conf_text)
    log = open(tmp_path / "activated.log", "wb")
    p = subprocess.Popen(["systemd-socket-activate", *args, ACRDNSD, "-f", "-c", str(conf)],
                         stdout=log, stderr=log, env=dict(os.environ, **(env_extra or {})))
    path = tmp_path / "activated.log"
    deadline = time.monotonic() + 5
    while "Listening on" not in path.read_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    return p, path


def activated_config(upstream, tmp_path, listen=""):
    """The socket activation tests' configuration, with `listen` lines if given."""
    return f'''{listen}
upstreams = [ "{upstream.addr}" ];
registries = ( {{ login_server = "{LOGIN}"; }} );
control_socket = "{tmp_path}/control.sock";
user = "root";
'''


needs_socket_activate = pytest.mark.skipif(
    not shutil.which("systemd-socket-activate"),
    reason="systemd-socket-activate (package systemd) is not installed")


def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


@needs_socket_activate
def test_socket_activation_udp_without_listen(upstream, tmp_path):
    upstream.set(LOGIN, records=[f"{LOGIN} A 20.62.0.1"])
    port = free_port()
    p, log = activate(tmp_path, activated_config(upstream, tmp_path),
                      ["--datagram", "-l", f"127.0.0.1:{port}"])
    try:
        # The first datagram starts acrdnsd, which answers it from the passed socket.
        r = dns.query.udp(dns.message.make_query(LOGIN, "A"), "127.0.0.1", port=port, timeout=10)
        assert r.rcode() == dns.rcode.NOERROR and "20.62.0.1" in r.to_text()
        text = log.read_text()
        assert "socket activation: 127.0.0.1#%d (udp)" % port in text
        assert "from socket activation" in text
        # No `listen`: it did not bind the loopback default on port 53.
        assert not re.search(r"127\.0\.0\.1#53\b", text)
    finally:
        stop(p)


@needs_socket_activate
def test_socket_activation_tcp_with_listen(upstream, tmp_path):
    upstream.set(LOGIN, records=[f"{LOGIN} A 20.62.0.1"])
    port = free_port()
    p, log = activate(tmp_path, activated_config(upstream, tmp_path, f'listen = [ "127.0.0.1:{port}" ];'),
                      ["-l", f"127.0.0.1:{port}"])
    try:
        r = dns.query.tcp(dns.message.make_query(LOGIN, "A"), "127.0.0.1", port=port, timeout=10)
        assert "20.62.0.1" in r.to_text()
        # The passed TCP socket took the place of a bind; UDP it bound itself.
        r = dns.query.udp(dns.message.make_query(LOGIN, "A"), "127.0.0.1", port=port, timeout=5)
        assert "20.62.0.1" in r.to_text()
        assert "(tcp) passed by the service manager" in log.read_text()
        # A reload keeps serving on the passed socket.
        reloaded = log.read_text().count("configuration reloaded")
        p.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while log.read_text().count("configuration reloaded") == reloaded and time.monotonic() < deadline:
            time.sleep(0.02)
        assert log.read_text().count("configuration reloaded") == reloaded + 1
        r = dns.query.tcp(dns.message.make_query(LOGIN, "A"), "127.0.0.1", port=port, timeout=5)
        assert "20.62.0.1" in r.to_text()
    finally:
        stop(p)


# ---- metrics ----

def parse_metrics(text):
    from prometheus_client.parser import text_string_to_metric_families
    samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels):
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def metrics_daemon(upstream, daemon, tmp_path):
    upstream.set(LOGIN, records=[f"{LOGIN} A 20.62.0.1"])
    src = tmp_path / "contoso.json"
    src.write_text(json.dumps({"loginServer": LOGIN, "dataEndpoints": [{"endpoint": EAST}]}))
    mport = free_port()
    d = daemon(f'''
upstreams = [ "{upstream.addr}" ];
rules = [ "@SRCDIR@/rules/azure-storage.rules" ];
registries = ( {{ login_server = "{LOGIN}"; discovery = {{ source = "file"; path = "{src}"; }}; }} );
state_dir = "{tmp_path}/state";
metrics_listen = "127.0.0.1:{mport}";
''')
    d.mport = mport
    assert d.wait_log(f"endpoint added: {EAST}")
    d.query(LOGIN)
    d.query(LOGIN)
    d.query(LOGIN, tcp=True)
    d.query("evil.blob.core.windows.net")
    return d


def check_samples(s, upstream):
    assert value(s, "acrdns_queries_total", transport="udp", verdict="allow") == 2
    assert value(s, "acrdns_queries_total", transport="tcp", verdict="allow") == 1
    assert value(s, "acrdns_queries_total", transport="udp", verdict="deny") == 1
    assert value(s, "acrdns_cache_hits_total") == 2
    assert value(s, "acrdns_cache_misses_total") == 1
    up = upstream.addr.replace(":", "#")
    assert value(s, "acrdns_upstream_queries_total", upstream=up, zone=".") >= 1
    assert value(s, "acrdns_upstream_rtt_seconds_count", upstream=up, zone=".") >= 1
    assert value(s, "acrdns_upstream_rtt_seconds_bucket", upstream=up, zone=".", le="+Inf") >= 1
    assert value(s, "acrdns_registry_endpoints", registry=LOGIN) == 1
    assert value(s, "acrdns_discovery_runs_total", registry=LOGIN, result="success") >= 1
    assert value(s, "acrdns_discovery_runs_total", registry=LOGIN, result="failure") == 0
    assert value(s, "acrdns_rules") > 10
    assert value(s, "acrdns_upstream_sockets", state="busy") >= 0
    assert value(s, "acrdns_upstream_sockets", state="idle") >= 0


def test_metrics_over_the_control_socket(metrics_daemon, upstream, tmp_path):
    r = ctl(tmp_path / "control.sock", "metrics")
    assert r.returncode == 0, r.stderr
    check_samples(parse_metrics(r.stdout), upstream)


def test_metrics_over_http(metrics_daemon, upstream):
    url = f"http://127.0.0.1:{metrics_daemon.mport}"
    with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        check_samples(parse_metrics(r.read().decode()), upstream)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url + "/other", timeout=5)
    assert e.value.code == 404
    req = urllib.request.Request(url + "/metrics", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=5)
    assert e.value.code == 405
    # A client that connects and says nothing does not stop the daemon.
    idle = socket.create_connection(("127.0.0.1", metrics_daemon.mport))
    assert metrics_daemon.query(LOGIN).rcode() == dns.rcode.NOERROR
    idle.close()


def test_metrics_listen_moves_on_reload(metrics_daemon, upstream, tmp_path):
    new = free_port()
    text = metrics_daemon.conf.read_text().replace(f":{metrics_daemon.mport}\"", f":{new}\"")
    metrics_daemon.conf.write_text(text)
    metrics_daemon.reload()
    with urllib.request.urlopen(f"http://127.0.0.1:{new}/metrics", timeout=5) as r:
        assert b"acrdns_queries_total" in r.read()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{metrics_daemon.mport}/metrics", timeout=2)


# ---- JSON query log ----

def test_json_query_log(upstream, daemon):
    upstream.set(LOGIN, records=[f"{LOGIN} A 20.62.0.1"])
    d = daemon(f'''
upstreams = [ "{upstream.addr}" ];
rules = [ "@SRCDIR@/rules/azure-storage.rules" ];
registries = ( {{ login_server = "{LOGIN}"; }} );
log = {{ queries = "all"; format = "json"; }};
''')
    d.query(LOGIN)
    d.query('evil"name.blob.core.windows.net')
    # Both answers are out, so both lines are written: wait for the file to show them.
    assert d.wait_log('"verdict":"deny"')
    lines = [l for l in d.read_log().splitlines() if l.strip()]
    docs = [json.loads(l) for l in lines]       # every line is one JSON document
    assert all("time" in j and "level" in j for j in docs)
    queries = [j for j in docs if j.get("event") == "query"]
    allowed = [j for j in queries if j["name"] == LOGIN + "."]
    assert allowed and allowed[0]["verdict"] == "allow" and allowed[0]["type"] == "A"
    assert allowed[0]["proto"] == "udp" and allowed[0]["client"].startswith("127.0.0.1#")
    denied = [j for j in queries if j["verdict"] == "deny"]
    assert denied and "blob.core.windows.net" in denied[0]["name"]
    assert "azure-storage.rules" in denied[0]["rule"]


def test_text_log_unchanged_by_default(upstream, daemon):
    d = daemon(f'upstreams = [ "{upstream.addr}" ];\nlog = {{ queries = "all"; }};\n')
    d.query("example.com")
    assert d.wait_log("query client=127.0.0.1#")
    assert all(l.startswith("<") for l in d.read_log().splitlines() if l)


# ---- acrdnsctl metrics, nft, firewall ----

def test_acrdnsctl_nft_and_firewall(upstream, daemon, tmp_path):
    d = daemon(f'''
upstreams = [ "{upstream.addr}" ];
registries = ( {{ login_server = "{LOGIN}";
                  data_endpoints = [ "{EAST}", "contoso.westus.geo.azurecr.io" ]; }} );
nftables = {{ table = "inet lab{os.getpid()}"; set4 = "reg4"; set6 = "reg6"; grace = 120; }};
''')
    sock = tmp_path / "control.sock"
    r = ctl(sock, "nft")
    assert r.returncode == 0
    assert f"table inet lab{os.getpid()} {{" in r.stdout and "set reg4" in r.stdout
    assert "plus 120 s" in r.stdout
    j = json.loads(ctl(sock, "--json", "nft").stdout)
    assert j["enabled"] is True and "set reg6" in j["ruleset"]

    r = ctl(sock, "firewall")
    names = [l for l in r.stdout.splitlines() if l and not l.startswith("#")]
    assert names == [LOGIN, EAST, "contoso.westus.geo.azurecr.io"]
    j = json.loads(ctl(sock, "--json", "firewall").stdout)
    assert j == [{"registry": LOGIN, "login_server": LOGIN, "data_endpoints": [EAST],
                  "regional_endpoints": ["contoso.westus.geo.azurecr.io"],
                  "names": [LOGIN, EAST, "contoso.westus.geo.azurecr.io"]}]
    r = ctl(sock, "--json", "metrics")
    assert "acrdns_nft_batches_total" in json.loads(r.stdout)["metrics"]


def test_print_nft_uses_the_configured_names(tmp_path):
    conf = tmp_path / "n.conf"
    conf.write_text('upstreams = [ "127.0.0.1:9" ];\n'
                    'nftables = { table = "ip egress"; set4 = "registry"; grace = 60; };\n')
    r = subprocess.run([ACRDNSD, "--print-nft", "-c", str(conf)], capture_output=True, text=True)
    assert r.returncode == 0
    assert "table ip egress {" in r.stdout and "set registry {" in r.stdout
    assert "ip6" not in r.stdout                  # an ip table has no IPv6 set
    if shutil.which("nft"):
        f = tmp_path / "rules.nft"
        f.write_text(r.stdout)
        c = subprocess.run(["nft", "-c", "-f", str(f)], capture_output=True, text=True)
        assert c.returncode == 0, c.stderr


# ---- systemd units ----

def installed_unit(tmp_path):
    """The built unit with its binaries pointing into the build tree."""
    unit = os.path.join(BUILDDIR, "systemd", "acrdnsd.service")
    if not os.path.exists(unit):
        pytest.skip("systemd/acrdnsd.service is not built (make)")
    text = open(unit).read()
    text = re.sub(r"=\S*/sbin/acrdnsd ", f"={os.path.abspath(ACRDNSD)} ", text)
    text = re.sub(r"=\S*/sbin/acrdnsctl ", f"={os.path.abspath(ACRDNSCTL)} ", text)
    out = tmp_path / "acrdnsd.service"
    out.write_text(text)
    shutil.copy(os.path.join(SRCDIR, "systemd", "acrdnsd.socket"), tmp_path / "acrdnsd.socket")
    return out


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_unit_verifies(tmp_path):
    unit = installed_unit(tmp_path)
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit),
                        str(tmp_path / "acrdnsd.socket")], capture_output=True, text=True,
                       cwd=tmp_path, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_unit_security_score(tmp_path):
    unit = installed_unit(tmp_path)
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(unit)],
                       capture_output=True, text=True, cwd=tmp_path, timeout=60)
    m = re.search(r"Overall exposure level for acrdnsd.service: ([0-9.]+)", r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= 2.0


def test_unit_is_type_notify_with_watchdog_and_reload():
    text = open(os.path.join(BUILDDIR, "systemd", "acrdnsd.service")).read()
    for line in ("Type=notify", "WatchdogSec=", "ExecReload=", "User=acrdns",
                 "AmbientCapabilities=CAP_NET_BIND_SERVICE", "StateDirectory=acrdns",
                 "RuntimeDirectory=acrdns", "ConfigurationDirectory=acrdns"):
        assert line in text


# ---- example configurations ----

def test_airgap_example_checks_and_runs(upstream, daemon, tmp_path):
    src = os.path.join(SRCDIR, "examples", "airgap.conf")
    r = subprocess.run([ACRDNSD, "-t", "-c", src], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "local: contoso.azurecr.io" in r.stdout

    # Run it as written, on test addresses: the lab DNS server is the fake
    # upstream and the transfer medium a file here.
    text = open(src).read()
    text = text.replace('listen = [ "10.20.0.2:53", "127.0.0.1:53" ];', "")
    text = text.replace('"10.20.0.53"', f'"{upstream.addr}"')
    text = text.replace('"/etc/acrdns/contoso.json"', f'"{tmp_path}/contoso.json"')
    text = text.replace('"../rules/', f'"{os.path.abspath(SRCDIR)}/rules/')
    text += f'\nstate_dir = "{tmp_path}/state";\n'
    upstream.set("contoso.westeurope.data.azurecr.io",
                 records=["contoso.westeurope.data.azurecr.io A 10.20.0.6"])
    d = daemon(text)
    r = d.query(LOGIN)
    assert "10.20.0.5" in r.to_text() and upstream.count(LOGIN) == 0
    assert d.query("contoso.westeurope.data.azurecr.io").rcode() == dns.rcode.NXDOMAIN
    (tmp_path / "contoso.json").write_text(json.dumps(
        {"loginServer": LOGIN, "dataEndpoints": [{"endpoint": "contoso.westeurope.data.azurecr.io"}]}))
    assert d.wait_log("endpoint added: contoso.westeurope.data.azurecr.io", timeout=10)
    assert "10.20.0.6" in d.query("contoso.westeurope.data.azurecr.io").to_text()
    assert d.query("lab.blob.core.windows.net").rcode() == dns.rcode.NXDOMAIN


def test_container_example_checks():
    r = subprocess.run([ACRDNSD, "-t", "-c", os.path.join(SRCDIR, "examples", "container.conf")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "listen: 172.17.0.1#53" in r.stdout and "nftables: inet acrdns" in r.stdout
