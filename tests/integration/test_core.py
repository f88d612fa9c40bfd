"""The forwarder as a client sees it: caching, TTLs, TCP, EDNS, malformed
queries, upstream checks, failover, stale answers, reload."""
import json
import os
import signal
import socket
import struct
import subprocess
import threading
import time

import dns.edns
import dns.flags
import dns.exception
import dns.message
import dns.opcode
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from conftest import ACRDNSCTL, basic_config, free_port


def answer_ttl(resp):
    return resp.answer[0].ttl


def test_forwards_and_caches(upstream, daemon):
    upstream.set("www.example.com", records=["www.example.com A 192.0.2.1"], ttl=300)
    d = daemon(basic_config(upstream))
    r1 = d.query("www.example.com")
    r2 = d.query("www.example.com")
    assert r1.rcode() == dns.rcode.NOERROR
    assert [rr.address for rr in r1.answer[0]] == ["192.0.2.1"]
    assert r2.answer == r1.answer
    assert upstream.count("www.example.com") == 1


def test_question_case_echoed_and_cache_is_case_insensitive(upstream, daemon):
    upstream.set("mixed.example.com", records=["mixed.example.com A 192.0.2.2"])
    d = daemon(basic_config(upstream))
    d.query("mixed.example.com")
    r = d.query("MiXeD.ExAmPlE.CoM")
    assert r.question[0].name.to_text() == "MiXeD.ExAmPlE.CoM."
    assert r.answer[0].name.to_text() == "MiXeD.ExAmPlE.CoM."
    assert upstream.count("mixed.example.com") == 1


def test_ttl_ages_in_cache(upstream, daemon):
    upstream.set("age.example.com", records=["age.example.com A 192.0.2.3"], ttl=100)
    d = daemon(basic_config(upstream))
    assert answer_ttl(d.query("age.example.com")) == 100
    time.sleep(2.1)
    ttl = answer_ttl(d.query("age.example.com"))
    assert 97 <= ttl <= 98
    assert upstream.count("age.example.com") == 1


def test_ttl_bounds(upstream, daemon):
    upstream.set("short.example.com", records=["short.example.com A 192.0.2.4"], ttl=1)
    upstream.set("long.example.com", records=["long.example.com A 192.0.2.5"], ttl=900000)
    d = daemon(basic_config(upstream, 'cache = { min_ttl = 60; max_ttl = 3600; };'))
    assert answer_ttl(d.query("short.example.com")) == 60
    assert answer_ttl(d.query("long.example.com")) == 3600
    time.sleep(1.2)
    d.query("short.example.com")
    assert upstream.count("short.example.com") == 1


def test_expired_entry_is_fetched_again(upstream, daemon):
    upstream.set("exp.example.com", records=["exp.example.com A 192.0.2.6"], ttl=1)
    d = daemon(basic_config(upstream))
    d.query("exp.example.com")
    time.sleep(1.2)
    d.query("exp.example.com")
    assert upstream.count("exp.example.com") == 2


def test_negative_answers_cached_with_soa_bound(upstream, daemon):
    d = daemon(basic_config(upstream, 'cache = { negative_ttl = 30; };'))
    r = d.query("nope.example.com")
    assert r.rcode() == dns.rcode.NXDOMAIN
    # The SOA says 60; negative_ttl caps it at 30 for the client too.
    assert r.authority[0].ttl == 30
    r = d.query("nope.example.com")
    assert r.rcode() == dns.rcode.NXDOMAIN
    assert upstream.count("nope.example.com") == 1


def test_nodata_cached(upstream, daemon):
    upstream.set("v4only.example.com", records=["v4only.example.com A 192.0.2.7"])
    d = daemon(basic_config(upstream))
    for _ in range(2):
        r = d.query("v4only.example.com", "AAAA")
        assert r.rcode() == dns.rcode.NOERROR and not r.answer and r.authority
    assert upstream.count("v4only.example.com") == 1


def test_negative_without_soa_is_not_cached(upstream, daemon):
    upstream.set("nosoa.example.com", rcode=dns.rcode.NXDOMAIN,
                 authority=["example.com NS ns.example.com."])
    d = daemon(basic_config(upstream))
    d.query("nosoa.example.com")
    d.query("nosoa.example.com")
    assert upstream.count("nosoa.example.com") == 2


def test_cache_key_includes_do_and_cd(upstream, daemon):
    upstream.set("sec.example.com", records=["sec.example.com A 192.0.2.8"])
    d = daemon(basic_config(upstream))
    d.query("sec.example.com")
    d.query("sec.example.com", want_dnssec=True)
    q = dns.message.make_query("sec.example.com", "A", use_edns=0)
    q.flags |= dns.flags.CD
    d.send(q)
    assert upstream.count("sec.example.com") == 3
    do_queries = [x for x in upstream.queries if x.msg.ednsflags & dns.flags.DO]
    assert len(do_queries) == 1


def test_tcp_answers(upstream, daemon):
    upstream.set("tcp.example.com", records=["tcp.example.com A 192.0.2.9"])
    d = daemon(basic_config(upstream))
    r = d.query("tcp.example.com", tcp=True)
    assert r.answer[0][0].address == "192.0.2.9"


def test_tcp_pipelining_out_of_order(upstream, daemon):
    upstream.set("slow.example.com", records=["slow.example.com A 192.0.2.10"], delay=0.5)
    upstream.set("fast.example.com", records=["fast.example.com A 192.0.2.11"])
    d = daemon(basic_config(upstream))
    with socket.create_connection(("127.0.0.1", d.port), timeout=5) as s:
        q1 = dns.message.make_query("slow.example.com", "A")
        q2 = dns.message.make_query("fast.example.com", "A")
        q1.id, q2.id = 1111, 2222
        for q in (q1, q2):
            w = q.to_wire()
            s.sendall(struct.pack("!H", len(w)) + w)
        ids = []
        for _ in range(2):
            n = struct.unpack("!H", recv_exact(s, 2))[0]
            ids.append(dns.message.from_wire(recv_exact(s, n)).id)
    # The fast answer does not wait behind the slow one.
    assert ids == [2222, 1111]


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        assert chunk, "connection closed early"
        buf += chunk
    return buf


def test_tcp_idle_connection_closed(upstream, daemon):
    d = daemon(basic_config(upstream))
    with socket.create_connection(("127.0.0.1", d.port), timeout=15) as s:
        start = time.monotonic()
        assert s.recv(10) == b""
        assert 9 <= time.monotonic() - start <= 13


def big_records(name, n):
    return [f"{name} TXT \"{'x' * 200} {i}\"" for i in range(n)]


def test_large_answer_truncated_over_udp_then_full_over_tcp(upstream, daemon):
    upstream.set("big.example.com", records=big_records("big.example.com", 20))
    d = daemon(basic_config(upstream))
    r = d.query("big.example.com", "TXT", use_edns=0, payload=1232)
    assert r.flags & dns.flags.TC and not r.answer
    r = d.query("big.example.com", "TXT", tcp=True)
    assert not r.flags & dns.flags.TC and len(r.answer[0]) == 20


def test_udp_limit_512_without_edns(upstream, daemon):
    upstream.set("mid.example.com", records=big_records("mid.example.com", 3))
    d = daemon(basic_config(upstream))
    r = d.query("mid.example.com", "TXT", use_edns=False)
    assert r.flags & dns.flags.TC
    assert r.edns < 0
    r = d.query("mid.example.com", "TXT", use_edns=0, payload=1232)
    assert not r.flags & dns.flags.TC and len(r.answer[0]) == 3


def test_upstream_truncation_retried_over_tcp(upstream, daemon):
    upstream.set("tc.example.com", records=["tc.example.com A 192.0.2.12"], tc=True)
    d = daemon(basic_config(upstream))
    r = d.query("tc.example.com")
    assert r.answer[0][0].address == "192.0.2.12"
    assert upstream.count("tc.example.com", "udp") == 1
    assert upstream.count("tc.example.com", "tcp") == 1


def test_edns_echoed_and_advertised(upstream, daemon):
    upstream.set("e.example.com", records=["e.example.com A 192.0.2.13"])
    d = daemon(basic_config(upstream))
    r = d.query("e.example.com", use_edns=0, payload=4096)
    assert r.edns == 0 and r.payload == 1232
    r = d.query("e.example.com", use_edns=False)
    assert r.edns == -1
    up = upstream.queries[0].msg
    assert up.edns == 0 and up.payload == 1232


def test_edns_bad_version(upstream, daemon):
    d = daemon(basic_config(upstream))
    q = dns.message.make_query("v1.example.com", "A")
    q.use_edns(edns=1)  # use_edns=1 in make_query is True, i.e. version 0
    r = d.send(q)
    assert r.rcode() == dns.rcode.BADVERS
    assert r.edns == 0
    assert upstream.count() == 0


def test_unknown_edns_option_ignored(upstream, daemon):
    upstream.set("opt.example.com", records=["opt.example.com A 192.0.2.14"])
    d = daemon(basic_config(upstream))
    q = dns.message.make_query("opt.example.com", "A", use_edns=0,
                               options=[dns.edns.GenericOption(65001, b"hello")])
    r = d.send(q)
    assert r.rcode() == dns.rcode.NOERROR and r.answer


def header(id_=0x1234, flags=0x0100, qd=1, an=0, ns=0, ar=0):
    return struct.pack("!6H", id_, flags, qd, an, ns, ar)


QNAME = b"\x03www\x07example\x03com\x00"


def test_malformed_queries(upstream, daemon):
    d = daemon(basic_config(upstream))
    # Too short for a header: dropped.
    assert d.raw(b"\x12\x34\x01") is None
    # Header readable, question cut: FORMERR.
    r = d.raw(header() + b"\x03www\x07exa")
    assert r is not None and r[:2] == b"\x12\x34" and (r[3] & 0xf) == dns.rcode.FORMERR
    # Label pointing forward (compression in the question): FORMERR.
    r = d.raw(header() + b"\xc0\x20" + struct.pack("!HH", 1, 1))
    assert (r[3] & 0xf) == dns.rcode.FORMERR
    # QDCOUNT 0 and 2: FORMERR.
    for qd in (0, 2):
        r = d.raw(header(qd=qd) + QNAME + struct.pack("!HH", 1, 1))
        assert (r[3] & 0xf) == dns.rcode.FORMERR
    # A response (QR set) is never answered.
    assert d.raw(header(flags=0x8100) + QNAME + struct.pack("!HH", 1, 1)) is None
    # Two OPT records: FORMERR.
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)
    r = d.raw(header(ar=2) + QNAME + struct.pack("!HH", 1, 1) + opt + opt)
    assert (r[3] & 0xf) == dns.rcode.FORMERR
    # Name longer than 255 bytes: FORMERR.
    long_name = (b"\x3f" + b"a" * 63) * 4 + b"\x00"
    r = d.raw(header() + long_name + struct.pack("!HH", 1, 1))
    assert (r[3] & 0xf) == dns.rcode.FORMERR
    assert upstream.count() == 0
    assert d.alive()


def test_other_opcodes_not_implemented(upstream, daemon):
    d = daemon(basic_config(upstream))
    for opcode in (dns.opcode.NOTIFY, dns.opcode.UPDATE, dns.opcode.STATUS):
        q = dns.message.make_query("www.example.com", "SOA")
        q.set_opcode(opcode)
        r = d.send(q)
        assert r.rcode() == dns.rcode.NOTIMP
    assert upstream.count() == 0


OPT = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)


def has_opt(reply):
    """The reply's additional section ends in our OPT (no EDE: 11 bytes)."""
    ar = struct.unpack("!H", reply[10:12])[0]
    return ar >= 1 and b"\x00\x00\x29" in reply[12:]


def test_opcode_before_question_count(upstream, daemon):
    """RFC 1035/6895: an unknown opcode is NOTIMP whatever the counts; its
    reply sets neither RA nor CD; RFC 6891 7: OPT echoed, error or not."""
    d = daemon(basic_config(upstream))
    question = QNAME + struct.pack("!HH", 1, 1)
    for opcode in (dns.opcode.STATUS, 3, dns.opcode.NOTIFY, 15):
        for qd, body in ((0, b""), (1, question)):
            flags = (int(opcode) << 11) | 0x0110   # RD and CD asked
            r = d.raw(header(flags=flags, qd=qd, ar=1) + body + OPT)
            assert r is not None, (opcode, qd)
            assert (r[3] & 0xf) == dns.rcode.NOTIMP, (opcode, qd)
            reply_flags = struct.unpack("!H", r[2:4])[0]
            assert (reply_flags >> 11) & 0xf == int(opcode)
            assert not reply_flags & 0x0080, "RA set on a non-QUERY reply"
            assert not reply_flags & 0x0010, "CD set on a non-QUERY reply"
            assert has_opt(r), (opcode, qd)
            # Without OPT in the query, none in the reply.
            r = d.raw(header(flags=flags, qd=qd) + body)
            assert (r[3] & 0xf) == dns.rcode.NOTIMP and not has_opt(r)
    # FORMERR keeps OPT too: no question, two questions, two OPTs.
    for packet in (header(qd=0, ar=1) + OPT, header(qd=2, ar=1) + question * 2 + OPT,
                   header(ar=2) + question + OPT + OPT):
        r = d.raw(packet)
        assert (r[3] & 0xf) == dns.rcode.FORMERR and has_opt(r)
        assert struct.unpack("!H", r[2:4])[0] & 0x0080  # RA: a QUERY
    assert upstream.count() == 0


def test_zone_transfer_and_meta_types_refused(upstream, daemon):
    d = daemon(basic_config(upstream))
    r = d.query("example.com", "AXFR")
    assert r.rcode() == dns.rcode.NOTIMP
    r = d.query("example.com", "IXFR")
    assert r.rcode() == dns.rcode.NOTIMP
    q = dns.message.make_query("version.bind", "TXT", rdclass="CH")
    assert d.send(q).rcode() == dns.rcode.REFUSED
    assert upstream.count() == 0


def test_access_refused_outside_networks(upstream, daemon):
    d = daemon(basic_config(upstream).replace('"127.0.0.0/8"', '"127.0.0.1/32"'))
    q = dns.message.make_query("www.example.com", "A")
    r = dns.query.udp(q, "127.0.0.1", port=d.port, timeout=3, source="127.0.0.2")
    assert r.rcode() == dns.rcode.REFUSED
    r = dns.query.tcp(q, "127.0.0.1", port=d.port, timeout=3, source="127.0.0.2")
    assert r.rcode() == dns.rcode.REFUSED
    assert upstream.count() == 0
    r = dns.query.udp(q, "127.0.0.1", port=d.port, timeout=3, source="127.0.0.1")
    assert r.rcode() != dns.rcode.REFUSED


def test_identical_questions_in_flight_sent_once(upstream, daemon):
    upstream.set("merge.example.com", records=["merge.example.com A 192.0.2.15"], delay=0.2)
    d = daemon(basic_config(upstream))
    socks = []
    for i in range(5):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(3)
        q = dns.message.make_query("merge.example.com", "A")
        s.sendto(q.to_wire(), ("127.0.0.1", d.port))
        socks.append((s, q))
    for s, q in socks:
        r = dns.message.from_wire(s.recv(65535))
        assert r.id == q.id and r.answer[0][0].address == "192.0.2.15"
        s.close()
    assert upstream.count("merge.example.com") == 1


def test_reply_with_wrong_id_or_question_ignored(upstream, daemon):
    upstream.set("spoof.example.com", records=["spoof.example.com A 6.6.6.6"], wrong_id=True)
    upstream.set("wq.example.com", records=["wq.example.com A 6.6.6.6"], wrong_question=True)
    d = daemon(basic_config(upstream))
    start = time.monotonic()
    r = d.query("spoof.example.com")
    assert r.rcode() == dns.rcode.SERVFAIL and not r.answer
    assert time.monotonic() - start < 4
    r = d.query("wq.example.com")
    assert r.rcode() == dns.rcode.SERVFAIL and not r.answer


def ask_in_background(d, upstream, name):
    """Send a query from a thread and return (thread, result) once the
    upstream has seen the question; result["r"] holds the reply after join()."""
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("r", d.query(name, timeout=6)))
    t.start()
    deadline = time.monotonic() + 2
    while upstream.count(name) == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    return t, result


def udp_sockets(pid):
    """Inodes of the UDP sockets a process holds."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    udp = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[9] in inodes:
                    udp.add(fields[9])
    return udp


def test_source_ports_carry_one_question_at_a_time(upstream, daemon):
    """A source port is reused for the next question to the same server, up
    to 64 questions, and never carries two questions at once."""
    upstream.set_default(records=[])
    for i in range(150):
        upstream.set(f"seq{i}.example.com", records=[f"seq{i}.example.com A 192.0.2.1"])
    d = daemon(basic_config(upstream))
    listeners = len(udp_sockets(d.proc.pid))
    for i in range(150):
        assert d.query(f"seq{i}.example.com").rcode() == dns.rcode.NOERROR
    ports = {}
    for q in upstream.queries:
        ports.setdefault(q.peer[1], []).append(q.msg.id)
    assert 3 <= len(ports) <= 6, ports.keys()          # 64 questions a port at most
    assert max(len(ids) for ids in ports.values()) <= 64
    for ids in ports.values():                          # a new ID for each question
        assert all(a != b for a, b in zip(ids, ids[1:]))
    # Twenty questions at once: twenty ports.
    upstream.clear()
    for i in range(20):
        upstream.set(f"par{i}.example.com", records=[f"par{i}.example.com A 192.0.2.2"], delay=0.3)
    socks = []
    for i in range(20):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(5)
        s.sendto(dns.message.make_query(f"par{i}.example.com", "A").to_wire(), ("127.0.0.1", d.port))
        socks.append(s)
    for s in socks:
        assert dns.message.from_wire(s.recv(65535)).answer
        s.close()
    # Retries (the delay is longer than the measured RTT) take ports of their
    # own too; a port is taken again only once its question is answered.
    times = {}
    for q in upstream.queries:
        times.setdefault(q.peer[1], []).append(q.time)
    assert len(times) >= 20
    for t in times.values():
        assert all(b - a >= 0.25 for a, b in zip(t, t[1:]))
    # Idle ports are closed after a few seconds: only the listeners' sockets stay.
    assert len(udp_sockets(d.proc.pid)) >= listeners + 20
    st = json.loads(subprocess.run([ACRDNSCTL, "-s", str(d.tmp / "control.sock"), "--json", "status"],
                                   capture_output=True, text=True, timeout=10).stdout)
    assert st["upstream_sockets"] == st["upstream_sockets_idle"] == len(udp_sockets(d.proc.pid)) - listeners
    deadline = time.monotonic() + 8
    while len(udp_sockets(d.proc.pid)) > listeners and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(udp_sockets(d.proc.pid)) == listeners


def test_late_reply_on_a_reused_port_never_answers_the_next_question(upstream, daemon):
    """The reply to a port's previous question, arriving while the port
    carries the next one, is dropped, and so is any other reply whose ID or
    question is not the one asked now."""
    upstream.set("first.example.com", records=["first.example.com A 192.0.2.31"])
    upstream.set("second.example.com", records=["second.example.com A 192.0.2.32"], delay=0.5)
    d = daemon(basic_config(upstream))
    assert d.query("first.example.com").answer
    first = upstream.queries[0]
    t, result = ask_in_background(d, upstream, "second.example.com")
    second = [q for q in upstream.queries if q.name == "second.example.com."][0]
    assert second.peer == first.peer                    # the same port, reused
    assert second.msg.id != first.msg.id
    # From the server's own address and port: the old question's reply again,
    # then the old answer under the new ID (wrong question).
    late = dns.message.make_response(first.msg)
    late.answer.append(dns.rrset.from_text("first.example.com.", 300, "IN", "A", "6.6.6.6"))
    upstream.udp.sendto(late.to_wire(), second.peer)
    late.id = second.msg.id
    upstream.udp.sendto(late.to_wire(), second.peer)
    t.join()
    r = result["r"]
    assert r.rcode() == dns.rcode.NOERROR
    assert [rr.address for rr in r.answer[0]] == ["192.0.2.32"]
    assert d.query("first.example.com").answer[0][0].address == "192.0.2.31"
    # Only the wrong question counts as a spoof; the late reply is expected traffic.
    from test_faults import stats
    assert stats(d)["upstream_bogus"] == 1


def test_reply_from_wrong_address_ignored(upstream, daemon):
    """A reply with the right ID, sent to the right port, but from another
    address than the server asked, never counts."""
    upstream.set("inject.example.com", drop=True)
    d = daemon(basic_config(upstream))
    t, result = ask_in_background(d, upstream, "inject.example.com")
    first = upstream.queries[0]
    forged = dns.message.make_response(first.msg)
    forged.answer.append(dns.rrset.from_text("inject.example.com.", 300, "IN", "A", "6.6.6.6"))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(forged.to_wire(), first.peer)
    t.join()
    assert result["r"].rcode() == dns.rcode.SERVFAIL
    assert not result["r"].answer


def test_failover_to_second_upstream(upstream, upstream2, daemon):
    upstream.set_default(drop=True)
    upstream2.set("fo.example.com", records=["fo.example.com A 192.0.2.16"])
    upstream2.set("fo2.example.com", records=["fo2.example.com A 192.0.2.17"])
    cfg = basic_config(upstream).replace(f'"{upstream.addr}"', f'"{upstream.addr}", "{upstream2.addr}"')
    d = daemon(cfg)
    start = time.monotonic()
    r = d.query("fo.example.com")
    assert r.answer[0][0].address == "192.0.2.16"
    assert time.monotonic() - start < 2
    # The dead server is now slow in the RTT table: the next question goes to the live one first.
    upstream.clear()
    start = time.monotonic()
    r = d.query("fo2.example.com")
    assert r.answer[0][0].address == "192.0.2.17"
    assert upstream.count("fo2.example.com") == 0       # never asked the dead one
    assert time.monotonic() - start < 1.0               # nor waited for it


def test_servfail_from_upstream_tries_the_other(upstream, upstream2, daemon):
    upstream.set("sf.example.com", rcode=dns.rcode.SERVFAIL)
    upstream2.set("sf.example.com", records=["sf.example.com A 192.0.2.18"])
    cfg = basic_config(upstream).replace(f'"{upstream.addr}"', f'"{upstream.addr}", "{upstream2.addr}"')
    d = daemon(cfg)
    r = d.query("sf.example.com")
    assert r.answer[0][0].address == "192.0.2.18"
    # The first server (no RTT known: the list's order) was asked, said SERVFAIL, and the other answered.
    assert upstream.count("sf.example.com") == 1 and upstream2.count("sf.example.com") == 1


def test_servfail_within_four_seconds_when_upstream_silent(upstream, daemon):
    upstream.set_default(drop=True)
    d = daemon(basic_config(upstream))
    start = time.monotonic()
    r = d.query("silent.example.com", timeout=10)
    elapsed = time.monotonic() - start
    assert r.rcode() == dns.rcode.SERVFAIL
    assert elapsed < 4.0
    # Retries went out with backoff, not a flood.
    assert 2 <= upstream.count("silent.example.com") <= 8


def test_servfail_fast_when_upstream_port_closed(daemon):
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    d = daemon(f'upstreams = [ "127.0.0.1:{port}" ]; mode = "filter";')
    start = time.monotonic()
    r = d.query("refused.example.com")
    assert r.rcode() == dns.rcode.SERVFAIL
    assert time.monotonic() - start < 1.0


def test_stale_answer_when_upstream_dies(upstream, daemon):
    upstream.set("stale.example.com", records=["stale.example.com A 192.0.2.19"], ttl=1)
    d = daemon(basic_config(upstream))
    assert d.query("stale.example.com").answer
    time.sleep(1.3)
    upstream.set("stale.example.com", drop=True)
    start = time.monotonic()
    r = d.query("stale.example.com", timeout=6)
    elapsed = time.monotonic() - start
    assert r.rcode() == dns.rcode.NOERROR
    assert r.answer[0][0].address == "192.0.2.19"
    assert r.answer[0].ttl == 30
    assert 1.5 < elapsed < 2.5
    assert any(o.otype == dns.edns.EDE and o.code == 3 for o in r.options)


def test_stale_not_served_past_stale_ttl(upstream, daemon):
    upstream.set("old.example.com", records=["old.example.com A 192.0.2.20"], ttl=1)
    d = daemon(basic_config(upstream, 'cache = { stale_ttl = 1; };'))
    d.query("old.example.com")
    time.sleep(2.2)
    upstream.set("old.example.com", drop=True)
    r = d.query("old.example.com", timeout=6)
    assert r.rcode() == dns.rcode.SERVFAIL


def test_garbage_from_upstream_is_not_an_answer(upstream, daemon):
    upstream.set("junk.example.com", garbage=True)
    d = daemon(basic_config(upstream))
    r = d.query("junk.example.com")
    assert r.rcode() == dns.rcode.SERVFAIL
    assert d.alive()


def test_reload_good_and_bad(upstream, upstream2, daemon, tmp_path):
    upstream.set("r.example.com", records=["r.example.com A 192.0.2.21"])
    upstream2.set("r2.example.com", records=["r2.example.com A 192.0.2.22"])
    d = daemon(basic_config(upstream))
    d.query("r.example.com")
    listen = f'listen = [ "127.0.0.1:{d.port}" ];\n'
    # A bad file: the old configuration stays and says why.
    d.reload(listen + basic_config(upstream2) + "\nbogus_key = 1;\n")
    assert "reload failed" in d.read_log()
    assert "unknown key 'bogus_key'" in d.read_log()
    assert d.query("r3.example.com").rcode() == dns.rcode.NXDOMAIN  # still upstream 1
    assert upstream.count("r3.example.com") == 1
    # A good file: the new upstream is used, the cache survives.
    d.reload(listen + basic_config(upstream2))
    assert "configuration reloaded" in d.read_log()
    assert d.query("r2.example.com").answer[0][0].address == "192.0.2.22"
    upstream.clear()
    assert d.query("r.example.com").answer[0][0].address == "192.0.2.21"
    assert upstream.count() == 0 and upstream2.count("r.example.com") == 0


def test_reload_drops_a_listener_with_queries_in_flight(upstream, daemon):
    """A reload that removes the address a waiting client asked on: the late
    answer has nowhere to go and is dropped; the daemon carries on."""
    upstream.set("slow.example.com", records=["slow.example.com A 192.0.2.30"], delay=1.0)
    upstream.set("fast.example.com", records=["fast.example.com A 192.0.2.31"])
    d = daemon(basic_config(upstream))
    other = free_port()
    d.reload(f'listen = [ "127.0.0.1:{d.port}", "127.0.0.1:{other}" ];\n' + basic_config(upstream))
    got = {}
    waiting = threading.Thread(target=lambda: got.setdefault("r", _query_or_none("slow.example.com", other)))
    waiting.start()
    deadline = time.monotonic() + 2
    while upstream.count("slow.example.com") == 0 and time.monotonic() < deadline:
        time.sleep(0.005)   # the question is in flight
    d.reload(f'listen = [ "127.0.0.1:{d.port}" ];\n' + basic_config(upstream))
    assert d.read_log().count("configuration reloaded") == 2
    # The late answer arrives (and is cached), but has no socket to go out of.
    assert d.wait_for(lambda: d.status()["cache_entries"] >= 1, timeout=4)
    waiting.join()
    assert got["r"] is None
    assert d.alive()
    assert d.query("fast.example.com").answer[0][0].address == "192.0.2.31"


def _query_or_none(name, port):
    try:
        return dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=2.5)
    except dns.exception.Timeout:
        return None


def test_never_forwards_to_itself(daemon):
    d = daemon('upstreams = [ "127.0.0.1:@PORT@" ]; mode = "filter";')
    assert "own listener; skipped" in d.read_log()
    r = d.query("loop.example.com")
    assert r.rcode() == dns.rcode.SERVFAIL


def test_upstreams_from_resolv_conf_followed(upstream, upstream2, daemon, tmp_path):
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(f"# test\nsearch example\nnameserver 127.0.0.1\n")
    upstream.set("rc.example.com", records=["rc.example.com A 192.0.2.23"])
    # Port 53 on loopback is not our fake; point at it through a file with a port-less entry
    # is not possible, so use the address form for the first and the file for the second.
    d = daemon(f'upstreams = [ "file:{resolv}" ]; mode = "filter";'
               f'log = {{ level = "debug"; }};')
    assert "upstream 127.0.0.1#53" in d.read_log()
    resolv.write_text("nameserver 127.0.0.9\nnameserver ::1\n")
    assert d.wait_log("re-reading upstream servers", timeout=6)
    assert d.wait_log("upstream 127.0.0.9#53")
    assert d.wait_log("upstream ::1#53")


def test_sigterm_stops_cleanly(upstream, daemon):
    d = daemon(basic_config(upstream))
    d.signal(signal.SIGTERM)
    assert d.proc.wait(5) == 0
    assert "acrdnsd stopped" in d.read_log()


def test_ipv6_listener(upstream, daemon):
    upstream.set("six.example.com", records=["six.example.com A 192.0.2.30"])
    d = daemon(basic_config(upstream), host="::1")
    assert d.query("six.example.com").answer[0][0].address == "192.0.2.30"
    assert d.query("six.example.com", tcp=True).answer[0][0].address == "192.0.2.30"


def test_wildcard_listener_answers_from_the_address_asked(upstream, daemon):
    """Bound to 0.0.0.0, a reply must come from the address the client sent
    to, or the client drops it (dnspython checks the source)."""
    upstream.set("wild.example.com", records=["wild.example.com A 192.0.2.31"])
    d = daemon(basic_config(upstream), start=False)
    d.write_config(f'listen = [ "0.0.0.0:{d.port}" ];\n' + basic_config(upstream))
    d.start()
    for dest in ("127.0.0.1", "127.0.0.2", "127.0.0.3"):
        q = dns.message.make_query("wild.example.com", "A")
        r = dns.query.udp(q, dest, port=d.port, timeout=3)
        assert r.answer[0][0].address == "192.0.2.31"
