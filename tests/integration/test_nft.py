"""Egress enforcement end to end (issue 6).  Three network namespaces: a
"registry" and a "storage" host each serving TCP 443, and a client whose
firewall is the ruleset from `acrdnsd --print-nft` and whose resolver is
acrdnsd (running inside the client namespace, where it fills the sets).
The client reaches the registry only after resolving it, and never the
storage address."""
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from conftest import ACRDNSCTL, ACRDNSD, LOGIN
from netns import Netns, netns_or_skip, sh, veth

HERE = os.path.dirname(os.path.abspath(__file__))
REGISTRY_IP = "10.214.1.2"
STORAGE_IP = "10.214.2.2"

SERVE = ("import socket,sys\n"
         "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
         "s.bind((sys.argv[1], 443)); s.listen(16)\n"
         "while True:\n"
         "    c,_=s.accept(); c.sendall(b'hello\\n'); c.close()\n")
CONNECT = ("import socket,sys\n"
           "try:\n"
           "    c=socket.create_connection((sys.argv[1], 443), timeout=1.5)\n"
           "    print(c.recv(16).decode().strip())\n"
           "except OSError as e:\n"
           "    print('blocked', e); sys.exit(1)\n")


def nft_or_skip():
    netns_or_skip()
    if not shutil.which("nft"):
        pytest.skip("nft(8) is not installed (package nftables)")
    probe = Netns(f"acrnp{os.getpid() % 100000}")
    try:
        r = probe.run("nft", "add", "table", "inet", "probe", check=False)
        if r.returncode != 0:
            pytest.skip(f"this kernel has no usable nftables: {r.stderr.strip()}")
    finally:
        probe.delete()


@pytest.fixture
def lab(tmp_path):
    nft_or_skip()
    tag = f"acrn{os.getpid() % 100000}"
    client, registry, storage = Netns(tag + "c"), Netns(tag + "r"), Netns(tag + "s")
    procs = []
    try:
        veth(client, "10.214.1.1/24", registry, REGISTRY_IP + "/24", tag + "r")
        veth(client, "10.214.2.1/24", storage, STORAGE_IP + "/24", tag + "s")
        for ns, ip in ((registry, REGISTRY_IP), (storage, STORAGE_IP)):
            procs.append(ns.popen(["/usr/bin/python3", "-c", SERVE, ip]))
        # The scripted upstream, inside the client namespace.
        up = client.popen(["/usr/bin/python3", os.path.join(HERE, "dnsfake.py"), "127.0.0.1",
                           f"{LOGIN} A {REGISTRY_IP}",
                           f"evil.blob.core.windows.net A {STORAGE_IP}"],
                          stdout=subprocess.PIPE, text=True)
        procs.append(up)
        client.upstream_port = int(up.stdout.readline())
        os.makedirs(f"/etc/netns/{client.name}", exist_ok=True)
        with open(f"/etc/netns/{client.name}/resolv.conf", "w") as f:
            f.write("nameserver 127.0.0.1\noptions timeout:2 attempts:1\n")
        client.registry, client.storage = registry, storage
        yield client
    finally:
        for p in procs:
            p.kill()
            p.wait()
        for ns in (client, registry, storage):
            ns.delete()


def config(lab, tmp_path, grace=300, user="root"):
    return f'''
user = "{user}";
listen = [ "127.0.0.1:53" ];
upstreams = [ "127.0.0.1:{lab.upstream_port}" ];
rules = [ "@SRCDIR@/rules/azure-storage.rules" ];
registries = ( {{ login_server = "{LOGIN}"; }} );
nftables = {{ table = "inet acrdns"; set4 = "allow4"; set6 = "allow6"; grace = {grace}; }};
'''


def connect(lab, ip):
    return lab.run("/usr/bin/python3", "-c", CONNECT, ip, check=False)


# As docker and containerd do: resolve, then connect at once, with a short
# connect timeout so that a dropped first SYN (retransmitted after 1 s) fails.
RESOLVE_AND_CONNECT = ("import socket,sys,time\n"
                       "t=time.monotonic()\n"
                       "ai=socket.getaddrinfo(sys.argv[1], 443, socket.AF_INET, socket.SOCK_STREAM)\n"
                       "try:\n"
                       "    c=socket.create_connection((ai[0][4][0], 443), timeout=0.2)\n"
                       "    print(c.recv(16).decode().strip(), round(time.monotonic()-t, 3))\n"
                       "except OSError as e:\n"
                       "    print('blocked', e); sys.exit(1)\n")


def metrics(tmp_path):
    out = subprocess.run([ACRDNSCTL, "-s", str(tmp_path / "control.sock"), "metrics"],
                         capture_output=True, text=True).stdout
    return {l.split()[0]: float(l.split()[1]) for l in out.splitlines()
            if l.startswith("acrdns_nft_")}


def set_elements(lab, name="allow4"):
    r = lab.run("nft", "-j", "list", "set", "inet", "acrdns", name)
    for item in json.loads(r.stdout)["nftables"]:
        if "set" in item:
            return {(e["elem"]["val"] if isinstance(e, dict) else e):
                    (e["elem"].get("timeout") if isinstance(e, dict) else None)
                    for e in item["set"].get("elem", [])}
    return {}


def test_client_reaches_registry_only_after_resolving_it(lab, daemon, tmp_path):
    ruleset = tmp_path / "acrdns.nft"
    r = subprocess.run([ACRDNSD, "--print-nft"], capture_output=True, text=True, check=True)
    ruleset.write_text(r.stdout)
    assert lab.run("nft", "-c", "-f", str(ruleset), check=False).returncode == 0
    lab.run("nft", "-f", str(ruleset))

    # As the packaged daemon runs: an unprivileged user keeping CAP_NET_ADMIN.
    d = daemon(config(lab, tmp_path, user="nobody"), start=False)
    d.prefix = ["ip", "netns", "exec", lab.name]
    d.start()
    assert "with CAP_NET_ADMIN for nftables" in d.read_log()

    # Nothing resolved yet: the registry's address is closed too.
    assert connect(lab, REGISTRY_IP).returncode == 1

    r = lab.run("getent", "ahosts", LOGIN, check=False)
    assert r.returncode == 0 and REGISTRY_IP in r.stdout, r.stdout + r.stderr
    deadline = time.monotonic() + 3
    while REGISTRY_IP not in set_elements(lab) and time.monotonic() < deadline:
        time.sleep(0.05)
    elems = set_elements(lab)
    assert REGISTRY_IP in elems
    # Timeout: the TTL the client got (300) plus the grace period (300).
    assert 590 <= elems[REGISTRY_IP] <= 600
    assert connect(lab, REGISTRY_IP).stdout.strip() == "hello"

    # The storage account: no answer, no entry, no connection.
    r = lab.run("getent", "ahosts", "evil.blob.core.windows.net", check=False)
    assert r.returncode == 2
    assert STORAGE_IP not in set_elements(lab)
    assert connect(lab, STORAGE_IP).returncode == 1

    # Cache hits do not add the address again; metrics count the work.
    for _ in range(5):
        lab.run("getent", "ahosts", LOGIN, check=False)
    m = subprocess.run([ACRDNSCTL, "-s", str(tmp_path / "control.sock"), "metrics"],
                       capture_output=True, text=True).stdout
    added = [l for l in m.splitlines() if l.startswith("acrdns_nft_addresses_total ")]
    errors = [l for l in m.splitlines() if l.startswith("acrdns_nft_errors_total ")]
    assert added == ["acrdns_nft_addresses_total 1"] and errors == ["acrdns_nft_errors_total 0"]


def test_first_connection_after_resolving_is_not_dropped(lab, daemon, tmp_path):
    ruleset = tmp_path / "acrdns.nft"
    ruleset.write_text(subprocess.run([ACRDNSD, "--print-nft"], capture_output=True, text=True,
                                      check=True).stdout)
    lab.run("nft", "-f", str(ruleset))
    d = daemon(config(lab, tmp_path), start=False)
    d.prefix = ["ip", "netns", "exec", lab.name]
    d.start()
    # The answer that carries the new address waits for the commit: the
    # first SYN finds the address in the set.
    r = lab.run("/usr/bin/python3", "-c", RESOLVE_AND_CONNECT, LOGIN, check=False)
    assert r.returncode == 0 and r.stdout.startswith("hello"), r.stdout + r.stderr
    m = metrics(tmp_path)
    assert m["acrdns_nft_answers_held_total"] >= 1
    assert m["acrdns_nft_answers_unconfirmed_total"] == 0
    # The address is in the set now: cache hits are not held again.
    held = m["acrdns_nft_answers_held_total"]
    for _ in range(3):
        r = lab.run("/usr/bin/python3", "-c", RESOLVE_AND_CONNECT, LOGIN, check=False)
        assert r.returncode == 0, r.stdout + r.stderr
    assert metrics(tmp_path)["acrdns_nft_answers_held_total"] == held


def test_missing_table_is_reported_and_dns_still_answers(lab, daemon, tmp_path):
    d = daemon(config(lab, tmp_path), start=False)
    d.prefix = ["ip", "netns", "exec", lab.name]
    d.start()
    assert d.wait_log("set inet acrdns allow4 is not usable")
    r = lab.run("getent", "ahosts", LOGIN, check=False)
    assert r.returncode == 0 and REGISTRY_IP in r.stdout
    assert d.wait_log("nftables: cannot add 1 addresses to table inet acrdns")
    assert "DNS answers are not affected" in d.read_log()
    m = subprocess.run([ACRDNSCTL, "-s", str(tmp_path / "control.sock"), "metrics"],
                       capture_output=True, text=True).stdout
    assert "acrdns_nft_errors_total 1" in m
    # The answer waited for the failed commit, and went out unconfirmed.
    assert "acrdns_nft_answers_unconfirmed_total 1" in m
    # Once the table exists, the next answer fills it.
    r = subprocess.run([ACRDNSD, "--print-nft"], capture_output=True, text=True, check=True)
    (tmp_path / "r.nft").write_text(r.stdout)
    lab.run("nft", "-f", str(tmp_path / "r.nft"))
    subprocess.run([ACRDNSCTL, "-s", str(tmp_path / "control.sock"), "flush"], check=True,
                   capture_output=True)
    lab.run("getent", "ahosts", LOGIN, check=False)
    deadline = time.monotonic() + 3
    while REGISTRY_IP not in set_elements(lab) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert REGISTRY_IP in set_elements(lab)


def test_audit_mode_lets_the_firewall_through_too(lab, daemon, tmp_path):
    ruleset = tmp_path / "acrdns.nft"
    ruleset.write_text(subprocess.run([ACRDNSD, "--print-nft"], capture_output=True, text=True,
                                      check=True).stdout)
    lab.run("nft", "-f", str(ruleset))
    d = daemon(config(lab, tmp_path) + "audit = true;\n", start=False)
    d.prefix = ["ip", "netns", "exec", lab.name]
    d.start()
    # What the policy would deny resolves, and its address opens as an allowed one's.
    r = lab.run("/usr/bin/python3", "-c", RESOLVE_AND_CONNECT, "evil.blob.core.windows.net",
                check=False)
    assert r.returncode == 0 and r.stdout.startswith("hello"), r.stdout + r.stderr
    assert STORAGE_IP in set_elements(lab)
    out = subprocess.run([ACRDNSCTL, "-s", str(tmp_path / "control.sock"), "--json", "audit"],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["names"][0]["name"] == "evil.blob.core.windows.net"
