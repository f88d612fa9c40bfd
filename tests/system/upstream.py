"""A scripted upstream for tests/system/boot.sh, run inside the booted
container: answers A queries on loopback (UDP and TCP) from a fixed table,
any other name with 10.9.9.9, and appends every name asked to a file, so the
test can tell what acrdnsd forwarded and what it never sent.

usage: python3 upstream.py ADDRESS PORT LOGFILE
"""
import socketserver
import struct
import sys
import threading

import dns.message
import dns.rdatatype
import dns.rrset

TABLE = {
    "contoso.azurecr.io.": "10.0.0.5",
    "contoso.eastus.data.azurecr.io.": "10.0.0.6",
    "contoso.westeurope.data.azurecr.io.": "10.0.0.7",
}
OTHER = "10.9.9.9"
lock = threading.Lock()


def answer(wire):
    q = dns.message.from_wire(wire)
    name = q.question[0].name
    with lock, open(LOG, "a") as f:
        f.write(f"{name.to_text().lower()}\n")
    r = dns.message.make_response(q)
    if q.question[0].rdtype == dns.rdatatype.A:
        r.answer.append(dns.rrset.from_text(name, 300, "IN", "A",
                                            TABLE.get(name.to_text().lower(), OTHER)))
    return r.to_wire()


class UDP(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        sock.sendto(answer(data), self.client_address)


class TCP(socketserver.StreamRequestHandler):
    def handle(self):
        n = struct.unpack("!H", self.rfile.read(2))[0]
        out = answer(self.rfile.read(n))
        self.wfile.write(struct.pack("!H", len(out)) + out)


if __name__ == "__main__":
    addr, port, LOG = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    socketserver.ThreadingUDPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    udp = socketserver.ThreadingUDPServer((addr, port), UDP)
    tcp = socketserver.ThreadingTCPServer((addr, port), TCP)
    threading.Thread(target=tcp.serve_forever, daemon=True).start()
    with open(LOG, "a") as f:
        f.write("ready\n")
    udp.serve_forever()
