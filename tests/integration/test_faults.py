"""An upstream that lies or dies: what the client gets, that the daemon
stays up, and what the counters say."""
import re
import signal
import struct
import time

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest

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


def _ede(r):
    """The (code, text) of a reply's Extended DNS Error, or None."""
    for o in r.options:
        if o.otype == dns.edns.EDE:
            return o.code, o.text
    return None


def _formerr_to_edns(spoof=False, rcode=dns.rcode.FORMERR):
    """A pre-EDNS server: FORMERR (or rcode) without OPT to a query with OPT,
    an answer to one without.  spoof: that FORMERR has the wrong ID, as a
    blind spoofer's would."""
    def craft(query):
        if query.edns >= 0:
            r = dns.message.make_response(query)
            r.use_edns(False)
            r.set_rcode(rcode)
            wire = r.to_wire()
            return struct.pack("!H", (query.id + 1) & 0xffff) + wire[2:] if spoof else wire
        r = dns.message.make_response(query)
        r.flags |= dns.flags.RA
        r.answer.append(dns.rrset.from_text(query.question[0].name, 300, "IN", "A", "192.0.2.50"))
        return r.to_wire()
    return craft


@pytest.mark.parametrize("rcode", [dns.rcode.FORMERR, dns.rcode.NOTIMP])
def test_edns_rejected_is_retried_without_edns(upstream, daemon, rcode):
    upstream.set("old1.example.com", craft=_formerr_to_edns(rcode=rcode))
    upstream.set("old2.example.com", craft=_formerr_to_edns(rcode=rcode))
    d = daemon(basic_config(upstream))
    r = d.query("old1.example.com", use_edns=0)
    assert r.rcode() == dns.rcode.NOERROR and r.answer[0][0].address == "192.0.2.50"
    def with_opt(name):   # what reached the upstream for name (loop probes aside)
        return [q.msg.edns >= 0 for q in upstream.queries if q.name == name]
    assert with_opt("old1.example.com.") == [True, False]   # with OPT, then at once without
    d.wait_log("rejects EDNS")
    # Remembered for the server: the next name goes without OPT straight away.
    r = d.query("old2.example.com", use_edns=0)
    assert r.rcode() == dns.rcode.NOERROR
    assert with_opt("old2.example.com.") == [False]


def test_spoofed_formerr_does_not_turn_edns_off(upstream, daemon):
    upstream.set("spoof.example.com", craft=_formerr_to_edns(spoof=True))
    d = daemon(basic_config(upstream))
    r = d.query("spoof.example.com", use_edns=0, timeout=8)
    assert r.rcode() == dns.rcode.SERVFAIL
    assert upstream.count("spoof.example.com") >= 2
    assert all(q.msg.edns >= 0 for q in upstream.queries if q.name == "spoof.example.com.")
    assert "rejects EDNS" not in d.read_log()


def test_norec_answered_from_cache_only(upstream, daemon):
    upstream.set("cached.example.com", records=["cached.example.com A 192.0.2.51"])
    d = daemon(basic_config(upstream))
    d.query("cached.example.com")
    upstream.clear()
    q = dns.message.make_query("cached.example.com", "A", use_edns=0)
    q.flags &= ~dns.flags.RD
    r = d.send(q)
    assert r.rcode() == dns.rcode.NOERROR and r.answer[0][0].address == "192.0.2.51"
    assert not r.flags & dns.flags.RD
    q = dns.message.make_query("uncached.example.com", "A", use_edns=0)
    q.flags &= ~dns.flags.RD
    r = d.send(q)
    assert r.rcode() == dns.rcode.REFUSED and r.flags & dns.flags.RA
    assert _ede(r)[0] == 20
    assert upstream.count("cached.example.com") + upstream.count("uncached.example.com") == 0


def test_failed_refresh_serves_stale_at_once(upstream, daemon):
    upstream.set("outage.example.com", records=["outage.example.com A 192.0.2.52"], ttl=1)
    d = daemon(basic_config(upstream))
    d.query("outage.example.com")
    time.sleep(1.2)   # the TTL must run out
    upstream.set("outage.example.com", drop=True)
    r = d.query("outage.example.com", timeout=8)   # waits for the 1.8 s patience
    assert r.answer[0][0].address == "192.0.2.52"
    d.wait_log("outage.example.com. A failed: no upstream answered")
    sent = upstream.count("outage.example.com")
    start = time.monotonic()
    r = d.query("outage.example.com", timeout=8)
    # Stale without waiting for the patience again, and nothing more sent.
    assert time.monotonic() - start < 1.0
    assert r.answer[0][0].address == "192.0.2.52" and _ede(r)[0] == 3
    assert upstream.count("outage.example.com") == sent


def test_failed_name_gets_servfail_at_once(upstream, daemon):
    upstream.set("down.example.com", drop=True)
    upstream.set("up.example.com", records=["up.example.com A 192.0.2.53"])
    d = daemon(basic_config(upstream))
    r = d.query("down.example.com", timeout=8)
    assert r.rcode() == dns.rcode.SERVFAIL and _ede(r) == (22, "no upstream answered")
    d.wait_log("down.example.com. A failed")
    sent = upstream.count("down.example.com")
    start = time.monotonic()
    r = d.query("down.example.com", timeout=8)
    assert time.monotonic() - start < 1.0
    assert r.rcode() == dns.rcode.SERVFAIL and _ede(r) == (22, "no upstream answered")
    assert upstream.count("down.example.com") == sent
    # Other names are not touched; a flush forgets the failure.
    assert d.query("up.example.com").answer[0][0].address == "192.0.2.53"
    assert stats(d)["failure_cached"] == 1
    d.ctl("flush", check=True)
    d.query("down.example.com", timeout=8)
    assert upstream.count("down.example.com") > sent
    # So does a reload.
    sent = upstream.count("down.example.com")
    d.reload()
    d.query("down.example.com", timeout=8)
    assert upstream.count("down.example.com") > sent


def test_servfail_says_what_upstream_answered(upstream, daemon):
    upstream.set("refused.example.com", rcode=dns.rcode.REFUSED)
    d = daemon(basic_config(upstream))
    r = d.query("refused.example.com")
    text = f"upstream {upstream.host}#{upstream.port} answered REFUSED"
    assert r.rcode() == dns.rcode.SERVFAIL and _ede(r) == (22, text)
    d.wait_log(f"refused.example.com. A failed: {text}")
