"""An upstream that lies or dies: what the client gets, that the daemon
stays up, and what the counters say."""
import re
import signal
import time

import dns.flags
import dns.rcode

from conftest import basic_config


def stats(d):
    """SIGUSR1, then the counters from the newest stats line."""
    before = d.read_log().count("stats queries_udp")
    d.signal(signal.SIGUSR1)
    deadline = time.monotonic() + 3
    while d.read_log().count("stats queries_udp") == before and time.monotonic() < deadline:
        time.sleep(0.02)
    line = [l for l in d.read_log().splitlines() if "stats queries_udp" in l][-1]
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}


def test_upstream_answering_after_three_seconds(upstream, daemon):
    upstream.set("late.example.com", records=["late.example.com A 192.0.2.40"], delay=3.2)
    d = daemon(basic_config(upstream))
    start = time.monotonic()
    r = d.query("late.example.com", timeout=8)
    assert r.rcode() == dns.rcode.SERVFAIL
    assert time.monotonic() - start < 4
    time.sleep(1.5)  # the late answers arrive after the question was given up
    assert d.alive()
    s = stats(d)
    assert s["servfail"] == 1 and s["upstream_timeouts"] >= 1


def test_stale_answer_beats_a_late_upstream(upstream, daemon):
    upstream.set("flap.example.com", records=["flap.example.com A 192.0.2.41"], ttl=1)
    d = daemon(basic_config(upstream))
    d.query("flap.example.com")
    time.sleep(1.2)
    upstream.set("flap.example.com", records=["flap.example.com A 192.0.2.42"], ttl=1, delay=3)
    start = time.monotonic()
    r = d.query("flap.example.com", timeout=8)
    assert r.answer[0][0].address == "192.0.2.41" and r.answer[0].ttl == 30
    assert time.monotonic() - start < 2.5
    assert stats(d)["stale_served"] == 1


def test_truncated_then_tcp_closed(upstream, daemon):
    upstream.set("tcpdrop.example.com", records=["tcpdrop.example.com A 192.0.2.43"], tc=True, tcp_close=True)
    d = daemon(basic_config(upstream))
    start = time.monotonic()
    r = d.query("tcpdrop.example.com", timeout=8)
    assert r.rcode() == dns.rcode.SERVFAIL
    assert time.monotonic() - start < 4
    s = stats(d)
    assert s["upstream_tcp"] >= 1 and s["upstream_errors"] >= 1
    assert d.alive()


def test_64k_answer_over_tcp(upstream, daemon):
    records = [f"huge.example.com TXT \"{'z' * 200} {i:03d}\"" for i in range(300)]
    upstream.set("huge.example.com", records=records, tc=True)
    d = daemon(basic_config(upstream))
    r = d.query("huge.example.com", "TXT", tcp=True, timeout=8)
    assert len(r.answer[0]) == 300
    assert len(r.to_wire()) > 60000
    r = d.query("huge.example.com", "TXT", timeout=8)   # from the cache, over UDP
    assert r.flags & dns.flags.TC and not r.answer
    assert upstream.count("huge.example.com", "tcp") == 1


def test_counters_for_spoofs_and_garbage(upstream, daemon):
    upstream.set("spoof.example.com", records=["spoof.example.com A 6.6.6.6"], wrong_id=True)
    upstream.set("junk.example.com", garbage=True)
    upstream.set("sf.example.com", rcode=dns.rcode.SERVFAIL)
    d = daemon(basic_config(upstream))
    for name in ("spoof.example.com", "junk.example.com", "sf.example.com"):
        assert d.query(name, timeout=8).rcode() == dns.rcode.SERVFAIL
    s = stats(d)
    assert s["upstream_bogus"] >= 2      # the wrong ID and the garbage, at least once each
    assert s["servfail"] == 3
    assert s["upstream_errors"] >= 1     # the SERVFAIL from upstream
    assert s["cache_misses"] == 3 and s["cache_hits"] == 0
