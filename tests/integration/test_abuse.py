"""Abuse: per-client rate limits, TCP connection caps, slow and trickling
TCP clients, and the warning for an open resolver."""
import socket
import struct
import time

import dns.message
import dns.query
import dns.rcode
import pytest

from conftest import basic_config


def burst(d, n, source="127.0.0.1", name="www.example.com"):
    """n queries as fast as they go; rcodes of the answers (None for no answer)."""
    out = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        s.settimeout(0.5)
        for i in range(n):
            q = dns.message.make_query(name, "A")
            s.sendto(q.to_wire(), ("127.0.0.1", d.port))
            try:
                out.append(dns.message.from_wire(s.recv(65535)).rcode())
            except socket.timeout:
                out.append(None)
    return out


def test_rate_limit_refuses_past_the_burst(upstream, daemon):
    upstream.set("www.example.com", records=["www.example.com A 192.0.2.1"])
    d = daemon(basic_config(upstream, 'rate_limit = { qps = 5; burst = 10; };'))
    start = time.monotonic()
    codes = burst(d, 30)
    # The burst, and the tokens that came back while the 30 went (5 a second):
    # a slow machine takes longer and earns more.
    earned = int(5 * (time.monotonic() - start)) + 1
    assert 10 <= codes.count(dns.rcode.NOERROR) <= 10 + earned, (codes, earned)
    assert codes.count(dns.rcode.REFUSED) == 30 - codes.count(dns.rcode.NOERROR)
    # Another client has its own bucket.
    assert burst(d, 3, source="127.0.0.2") == [dns.rcode.NOERROR] * 3
    # Tokens come back at qps.
    time.sleep(1.1)
    assert burst(d, 1)[0] == dns.rcode.NOERROR
    assert upstream.count("www.example.com") == 1


def test_rate_limit_drop_and_exempt(upstream, daemon):
    upstream.set("www.example.com", records=["www.example.com A 192.0.2.1"])
    d = daemon(basic_config(upstream, 'rate_limit = { qps = 1; burst = 2; action = "drop"; '
                                      'exempt = [ "127.0.0.3/32" ]; };'))
    codes = burst(d, 6)
    assert codes[:2] == [dns.rcode.NOERROR] * 2
    assert codes[2:].count(None) >= 3          # dropped, not answered
    assert burst(d, 20, source="127.0.0.3") == [dns.rcode.NOERROR] * 20


def test_tcp_connections_capped_per_client(upstream, daemon):
    upstream.set("www.example.com", records=["www.example.com A 192.0.2.1"])
    d = daemon(basic_config(upstream, 'tcp = { max_per_client = 2; };'))
    held = [socket.create_connection(("127.0.0.1", d.port), timeout=3) for _ in range(2)]
    extra = socket.create_connection(("127.0.0.1", d.port), timeout=3)
    assert extra.recv(10) == b""                      # closed at once
    extra.close()
    q = dns.message.make_query("www.example.com", "A")
    for s in held:
        w = q.to_wire()
        s.sendall(struct.pack("!H", len(w)) + w)
        n = struct.unpack("!H", s.recv(2))[0]
        assert dns.message.from_wire(s.recv(n)).answer
        s.close()
    # Another address is not held back by this one's connections.
    r = dns.query.tcp(q, "127.0.0.1", port=d.port, source="127.0.0.4", timeout=3)
    assert r.answer


def test_trickling_tcp_client_is_closed(upstream, daemon):
    d = daemon(basic_config(upstream, 'tcp = { idle_timeout = 1; };'))
    q = dns.message.make_query("www.example.com", "A").to_wire()
    msg = struct.pack("!H", len(q)) + q
    with socket.create_connection(("127.0.0.1", d.port), timeout=5) as s:
        start = time.monotonic()
        closed = False
        for b in msg:           # a byte every 0.25 s keeps bytes coming, never a query
            try:
                s.sendall(bytes([b]))
            except OSError:
                closed = True
                break
            time.sleep(0.25)
            if time.monotonic() - start > 3:
                break
        if not closed:
            s.settimeout(2)
            try:
                closed = s.recv(10) == b""
            except ConnectionResetError:
                closed = True
        assert closed
        assert time.monotonic() - start < 3.5


def test_warning_for_open_resolver(upstream, daemon):
    d = daemon(basic_config(upstream).replace('"127.0.0.0/8", "::1/128"', '"0.0.0.0/0"'))
    assert "access allows every address (0.0.0.0/0)" in d.read_log()
