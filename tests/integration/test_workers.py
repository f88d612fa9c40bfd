"""`workers`: extra event loops answer UDP from SO_REUSEPORT sockets, with
one shared cache, so answers and upstream traffic do not depend on the loop
that took a query."""
import json
import os
import subprocess

import dns.flags
import dns.message
import dns.query
import dns.rcode

from conftest import ACRDNSD, basic_config


def test_workers_share_one_cache(upstream, daemon, tmp_path):
    upstream.set("w.example.com", records=["w.example.com A 192.0.2.40"])
    d = daemon(basic_config(upstream, "workers = 3;\ndeny = [ \"*.blob.core.windows.net\" ];"))
    assert json.loads(d.ctl("--json", "status", check=True).stdout)["workers"] == 3
    # Each query from a new socket: the kernel spreads them over the loops.
    for _ in range(60):
        r = dns.query.udp(dns.message.make_query("w.example.com", "A"), "127.0.0.1", port=d.port,
                          timeout=3)
        assert r.answer[0][0].address == "192.0.2.40"
    assert upstream.count("w.example.com") == 1
    for _ in range(30):
        r = dns.query.udp(dns.message.make_query("x.blob.core.windows.net", "A"), "127.0.0.1",
                          port=d.port, timeout=3)
    stats = json.loads(d.ctl("--json", "stats", check=True).stdout)
    assert stats["queries_udp"] == 90 and stats["cache_hits"] == 59 and stats["cache_misses"] == 1


def test_workers_hand_misses_to_the_main_loop_and_survive_reloads(upstream, daemon, tmp_path):
    for i in range(40):
        upstream.set(f"m{i}.example.com", records=[f"m{i}.example.com A 192.0.2.{i + 1}"])
    d = daemon(basic_config(upstream, "workers = 2;"))
    for i in range(40):
        r = dns.query.udp(dns.message.make_query(f"m{i}.example.com", "A"), "127.0.0.1", port=d.port,
                          timeout=3)
        assert r.answer[0][0].address == f"192.0.2.{i + 1}"
        if i % 10 == 0:
            d.reload()
    assert d.read_log().count("configuration reloaded") == 4
    assert all(upstream.count(f"m{i}.example.com") == 1 for i in range(40))
    assert d.alive()


def test_one_worker_is_the_main_loop_alone(upstream, daemon, tmp_path):
    d = daemon(basic_config(upstream, "workers = 1;"))
    assert "event loops: 1\n" in d.ctl("status", check=True).stdout
    assert d.query("example.com").rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN)


def test_workers_bind_port_53_before_dropping_root(upstream, daemon, tmp_path):
    if os.geteuid() != 0:
        import pytest
        pytest.skip("binding port 53 and dropping privileges need root")
    upstream.set("p.example.com", records=["p.example.com A 192.0.2.53"])
    d = daemon(f'listen = [ "127.88.0.1:53" ];\nuser = "nobody";\nstate_dir = "{tmp_path}/state";\n'
               + basic_config(upstream, "workers = 2;"))
    assert "running as user nobody" in d.read_log()
    assert "(udp, worker)" not in d.read_log()   # no twin failed to bind
    for _ in range(20):
        r = dns.query.udp(dns.message.make_query("p.example.com", "A"), "127.88.0.1", port=53,
                          timeout=3)
        assert r.answer[0][0].address == "192.0.2.53"
    assert upstream.count("p.example.com") == 1


def test_workers_answer_norec_without_the_main_loop(upstream, daemon, tmp_path):
    upstream.set("n.example.com", records=["n.example.com A 192.0.2.41"])
    d = daemon(basic_config(upstream, "workers = 3;"))
    d.query("n.example.com")
    upstream.clear()
    # Each query from a new socket: the kernel spreads them over the loops.
    for name in ["n.example.com", "uncached.example.com"] * 20:
        q = dns.message.make_query(name, "A")
        q.flags &= ~dns.flags.RD
        r = dns.query.udp(q, "127.0.0.1", port=d.port, timeout=3)
        if name == "n.example.com":
            assert r.answer[0][0].address == "192.0.2.41"
        else:
            assert r.rcode() == dns.rcode.REFUSED
    assert upstream.count("n.example.com") + upstream.count("uncached.example.com") == 0
    stats = json.loads(d.ctl("--json", "stats", check=True).stdout)
    assert stats["refused_norec"] == 20
