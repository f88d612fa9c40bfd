"""acrdnsctl against a running daemon: every command, text and JSON, and
bad requests answered with an error, never a crash."""
import json
import os
import socket
import subprocess

import dns.rcode
import pytest

from conftest import ACRDNSCTL, LOGIN

EAST = "contoso.eastus.data.azurecr.io"


@pytest.fixture
def ctl_daemon(upstream, daemon, tmp_path):
    upstream.set(EAST, records=[f"{EAST} A 20.60.0.1"])
    upstream.set(LOGIN, records=[f"{LOGIN} A 20.62.0.1"])
    src = tmp_path / "contoso.json"
    src.write_text(json.dumps({"loginServer": LOGIN, "dataEndpoints": [{"endpoint": EAST}]}))
    sock = tmp_path / "run" / "control.sock"
    d = daemon(f'''
upstreams = [ "{upstream.addr}" ];
deny = [ "*.azurecr.io", "*.blob.core.windows.net" ];
registries = ( {{ login_server = "{LOGIN}"; discovery = {{ source = "file"; path = "{src}"; }}; }} );
state_dir = "{tmp_path}/state";
control_socket = "{sock}";
''')
    d.sock = str(sock)
    assert d.wait_log(f"endpoint added: {EAST}")
    return d


def test_socket_mode(ctl_daemon):
    assert oct(os.stat(ctl_daemon.sock).st_mode & 0o777) == "0o660"


def test_status_and_stats(ctl_daemon):
    ctl_daemon.query(LOGIN)
    out = ctl_daemon.ctl("status")
    assert out.returncode == 0 and "mode: allowlist" in out.stdout and "registries: 1" in out.stdout
    assert "upstream sockets: " in out.stdout
    st = json.loads(ctl_daemon.ctl("--json", "status").stdout)
    assert st["registries"] == 1 and st["cache_entries"] >= 1
    # The login server's question went upstream and its port waits in the pool.
    assert st["upstream_sockets"] >= 1 and st["upstream_sockets_idle"] <= st["upstream_sockets"]
    stats = json.loads(ctl_daemon.ctl("stats", "--json").stdout)
    assert stats["queries_udp"] >= 1 and stats["allowed"] >= 1
    assert "cache_misses 1" in ctl_daemon.ctl("stats").stdout


def test_endpoints(ctl_daemon):
    out = ctl_daemon.ctl("endpoints").stdout
    assert LOGIN in out and f"endpoint: {EAST}" in out and "source: file" in out
    assert "last error: none" in out
    eps = json.loads(ctl_daemon.ctl("endpoints", "--json").stdout)
    assert eps[0]["login_server"] == LOGIN and eps[0]["endpoints"] == [EAST]
    assert eps[0]["source"] == "file" and eps[0]["last_success"]


def test_explain(ctl_daemon):
    out = ctl_daemon.ctl("explain", "acct.blob.core.windows.net")
    assert out.returncode == 0 and "deny" in out.stdout and "*.blob.core.windows.net" in out.stdout
    j = json.loads(ctl_daemon.ctl("--json", "explain", EAST).stdout)
    assert j["verdict"] == "allow" and j["rule"].startswith(f"allow {EAST} (discovery {LOGIN})")


def test_flush_and_dump_cache(ctl_daemon, upstream):
    ctl_daemon.query(LOGIN)
    dump = ctl_daemon.ctl("dump-cache").stdout
    assert f"{LOGIN}. A ttl=" in dump
    entries = json.loads(ctl_daemon.ctl("dump-cache", "--json").stdout)
    assert any(e["name"] == f"{LOGIN}." and e["type"] == "A" for e in entries)
    assert ctl_daemon.ctl("flush", LOGIN).stdout.startswith("flushed 1 ")
    upstream.clear()
    ctl_daemon.query(LOGIN)
    assert upstream.count(LOGIN) == 1
    assert json.loads(ctl_daemon.ctl("flush", "--json").stdout)["flushed"] >= 1


def test_reload_reports_errors(ctl_daemon):
    assert ctl_daemon.ctl("reload").stdout == "reloaded\n"
    conf = ctl_daemon.conf.read_text()
    ctl_daemon.conf.write_text(conf + "\nmode = \"sideways\";\n")
    out = ctl_daemon.ctl("reload")
    assert out.returncode == 1 and "reload failed" in out.stderr and "'mode' is 'sideways'" in out.stderr
    assert ctl_daemon.query(LOGIN).rcode() == dns.rcode.NOERROR


def test_bad_requests(ctl_daemon):
    for args in (["frobnicate"], ["explain"], ["explain", "a..b"], ["status", "extra"], ["flush", "x..y"]):
        out = ctl_daemon.ctl(*args)
        assert out.returncode == 1 and out.stderr.startswith("error:"), (args, out)
    out = ctl_daemon.ctl("--json", "frobnicate")
    assert out.returncode == 1 and json.loads(out.stderr)["error"].startswith("unknown command")
    # Raw abuse of the socket: garbage, an overlong line, a silent client.
    for payload in (b"\x00\xff\xfe garbage\n", b"x" * 5000, b""):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(8)
            s.connect(ctl_daemon.sock)
            if payload:
                s.sendall(payload)
            data = s.recv(4096)
            assert payload == b"" or data.startswith(b"error:")
    assert ctl_daemon.ctl("status").returncode == 0
    assert ctl_daemon.alive()


def test_unreachable_daemon(tmp_path):
    out = subprocess.run([ACRDNSCTL, "-s", str(tmp_path / "none.sock"), "status"],
                         capture_output=True, text=True)
    assert out.returncode == 3 and "cannot reach acrdnsd" in out.stderr


def test_second_daemon_leaves_the_first_ones_socket(ctl_daemon, upstream, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    from conftest import Daemon
    d2 = Daemon(other, f'upstreams = [ "{upstream.addr}" ];\ncontrol_socket = "{ctl_daemon.sock}";\n')
    d2.start()
    try:
        assert d2.wait_log("is in use by another acrdnsd")
        # The first daemon still answers on its socket.
        assert "mode: allowlist" in ctl_daemon.ctl("status").stdout
    finally:
        d2.stop()
    assert os.path.exists(ctl_daemon.sock)
    assert ctl_daemon.ctl("status").returncode == 0
