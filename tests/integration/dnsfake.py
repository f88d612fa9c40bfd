"""A scripted upstream DNS server for the integration tests.

It listens on UDP and TCP on loopback, answers from a per-name script, and
records every query that reaches it, so a test can assert both what the
client saw and what acrdnsd sent upstream (or did not send).
"""
import socket
import struct
import threading
import time

import dns.flags
import dns.message
import dns.name
import dns.rdata
import dns.rcode
import dns.rdatatype
import dns.rrset


class Behaviour:
    """How the fake answers one name.  Fields left at their defaults give a
    plain answer with `records` (or NXDOMAIN with an SOA when there are none)."""

    def __init__(self, records=(), rcode=dns.rcode.NOERROR, authority=(), delay=0.0,
                 drop=False, garbage=False, wrong_id=False, wrong_question=False,
                 tc=False, tcp_close=False, ttl=300, craft=None, additional=()):
        self.records = list(records)
        self.rcode = rcode
        self.authority = list(authority)
        self.additional = list(additional)
        self.delay = delay
        self.drop = drop
        self.garbage = garbage
        self.wrong_id = wrong_id
        self.wrong_question = wrong_question
        self.tc = tc
        self.tcp_close = tcp_close
        self.ttl = ttl
        # craft(query) -> bytes: a reply built by hand, for what dnspython will not write.
        self.craft = craft


class Query:
    def __init__(self, transport, name, rdtype, msg, peer=None):
        self.peer = peer
        self.transport = transport
        self.name = name
        self.rdtype = rdtype
        self.msg = msg
        self.time = time.monotonic()


class FakeUpstream:
    def __init__(self, host="127.0.0.1", port=0):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # One port for UDP and TCP: take a free UDP port, retry when its TCP twin is busy.
        for _ in range(50):
            self.udp = socket.socket(family, socket.SOCK_DGRAM)
            self.udp.bind((host, port))
            self.port = self.udp.getsockname()[1]
            self.tcp = socket.socket(family, socket.SOCK_STREAM)
            self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                self.tcp.bind((host, self.port))
                break
            except OSError:
                self.udp.close()
                self.tcp.close()
        else:
            raise RuntimeError("no port free for both UDP and TCP")
        self.tcp.listen(64)
        self.host = host
        self.script = {}
        self.default = None
        self.queries = []
        self.unparsed = []   # what reached us that is no DNS query: a daemon bug
        self.probes = []      # loop-detection probes, see _reply
        self.lock = threading.Lock()
        self.running = True
        self.threads = [threading.Thread(target=self._udp_loop, daemon=True),
                        threading.Thread(target=self._tcp_loop, daemon=True)]
        for t in self.threads:
            t.start()

    @property
    def addr(self):
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def set(self, name, **kw):
        """Script the answer for a name (and every type of it)."""
        self.script[name.lower().rstrip(".") + "."] = Behaviour(**kw)

    def set_default(self, **kw):
        self.default = Behaviour(**kw)

    def names(self):
        with self.lock:
            return [q.name for q in self.queries]

    def count(self, name=None, transport=None):
        name = name and name.lower().rstrip(".") + "."
        with self.lock:
            return sum(1 for q in self.queries
                       if (name is None or q.name == name)
                       and (transport is None or q.transport == transport))

    def clear(self):
        with self.lock:
            self.queries.clear()

    def close(self):
        self.running = False
        for s in (self.udp, self.tcp):
            try:
                s.close()
            except OSError:
                pass

    # ---- answering ----

    def _behaviour(self, name):
        b = self.script.get(name)
        if b is None:
            b = self.default
        return b

    def _reply(self, query, transport, peer=None):
        """Return the wire reply for a query, or None to stay silent."""
        q = query.question[0]
        name = q.name.to_text().lower()
        if name.endswith(".acrdns-loop.test."):
            # acrdnsd's loop-detection probe, not a client's question: kept
            # apart so that tests counting what reached us are not disturbed.
            with self.lock:
                self.probes.append(Query(transport, name, q.rdtype, query, peer))
            resp = dns.message.make_response(query)
            resp.set_rcode(dns.rcode.NXDOMAIN)
            return resp.to_wire()
        b = self._behaviour(name)
        with self.lock:
            self.queries.append(Query(transport, name, q.rdtype, query, peer))
        if b is None:
            b = Behaviour(rcode=dns.rcode.NXDOMAIN)
        if b.delay:
            time.sleep(b.delay)
        if b.drop or (b.tcp_close and transport == "tcp"):
            return None
        if b.garbage:
            return b"\x13\x37garbage that is no DNS message"
        if b.craft:
            return b.craft(query)
        resp = dns.message.make_response(query)
        resp.flags |= dns.flags.RA
        resp.set_rcode(b.rcode)
        if b.tc and transport == "udp":
            resp.flags |= dns.flags.TC
        else:
            for text in b.records:
                rrset = self._rrset(text, b.ttl)
                if rrset.rdtype in (q.rdtype, dns.rdatatype.CNAME, dns.rdatatype.DNAME) or \
                        q.rdtype == dns.rdatatype.ANY:
                    resp.answer.append(rrset)
            for text in b.authority:
                resp.authority.append(self._rrset(text, b.ttl))
            for text in b.additional:
                resp.additional.append(self._rrset(text, b.ttl))
            # NXDOMAIN, and NODATA for types not scripted, carry an SOA (RFC 2308)
            # of a zone that encloses the name, as a real server's does.
            if not resp.answer and not b.authority and \
                    b.rcode in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
                zone = q.name.parent() if len(q.name.labels) > 2 else q.name
                resp.authority.append(dns.rrset.from_text(
                    zone, 60, "IN", "SOA", "ns.example. host.example. 1 3600 600 86400 60"))
        wire = resp.to_wire(max_size=65535)
        if b.wrong_question:
            other = dns.message.make_query("wrong.example.", q.rdtype)
            other.id = query.id
            other.flags |= dns.flags.QR
            wire = other.to_wire()
        if b.wrong_id:
            wire = struct.pack("!H", (query.id + 1) & 0xffff) + wire[2:]
        return wire

    @staticmethod
    def _rrset(text, ttl):
        """An RRset from "name TYPE rdata", with the behaviour's TTL."""
        name, rdtype, rdata = text.split(None, 2)
        rd = dns.rdata.from_text("IN", rdtype, rdata, origin=dns.name.root, relativize=False)
        return dns.rrset.from_rdata(dns.name.from_text(name), ttl, rd)

    def _udp_loop(self):
        while self.running:
            try:
                data, peer = self.udp.recvfrom(65535)
            except OSError:
                return
            threading.Thread(target=self._udp_one, args=(data, peer), daemon=True).start()

    def _unparsed(self, transport, data, err):
        with self.lock:
            self.unparsed.append((transport, data, repr(err)))

    def _udp_one(self, data, peer):
        try:
            query = dns.message.from_wire(data)
        except Exception as e:
            self._unparsed("udp", data, e)
            return
        wire = self._reply(query, "udp", peer)
        if wire is not None:
            try:
                self.udp.sendto(wire, peer)
            except OSError:
                pass

    def _tcp_loop(self):
        while self.running:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                return
            threading.Thread(target=self._tcp_one, args=(conn,), daemon=True).start()

    def _tcp_one(self, conn):
        with conn:
            conn.settimeout(5)
            try:
                while True:
                    hdr = self._recv_exact(conn, 2)
                    if not hdr:
                        return
                    data = self._recv_exact(conn, struct.unpack("!H", hdr)[0])
                    if data is None:
                        return
                    try:
                        query = dns.message.from_wire(data)
                    except Exception as e:
                        self._unparsed("tcp", data, e)
                        return
                    wire = self._reply(query, "tcp")
                    if wire is None:
                        return
                    conn.sendall(struct.pack("!H", len(wire)) + wire)
            except (OSError, Exception):
                return

    @staticmethod
    def _recv_exact(conn, n):
        buf = b""
        while len(buf) < n:
            chunk = conn.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf


if __name__ == "__main__":
    # Standalone, for a network namespace the test process is not in:
    #   dnsfake.py HOST "NAME TYPE DATA" ...   prints the port, serves until killed.
    import sys
    up = FakeUpstream(sys.argv[1])
    for rr in sys.argv[2:]:
        owner = rr.split()[0]
        prev = up.script.get(owner.lower().rstrip(".") + ".")
        up.set(owner, records=(prev.records if prev else []) + [rr])
    print(up.port, flush=True)
    while True:
        time.sleep(3600)
