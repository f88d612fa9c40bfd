"""A stand-in for systemd-resolved's stub listener configured with
DNS=127.0.0.1: every UDP query it gets goes to one server, and the answer
comes back.  When that server is acrdnsd and acrdnsd forwards to this stub,
the two make the loop that acrdnsd's loop detection must find.

In process: StubForwarder(host, port), then set .target = (host, port).
Standalone (inside a network namespace):
    stubfwd.py HOST PORT TO_HOST TO_PORT    prints its port, serves until killed.
"""
import socket
import sys
import threading


class StubForwarder:
    def __init__(self, host="127.0.0.1", port=0, target=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.host, self.port = host, self.sock.getsockname()[1]
        self.target = target
        self.forwarded = 0
        self.running = True
        threading.Thread(target=self._loop, daemon=True).start()

    @property
    def addr(self):
        return f"{self.host}:{self.port}"

    def _loop(self):
        while self.running:
            try:
                data, peer = self.sock.recvfrom(65535)
            except OSError:
                return
            threading.Thread(target=self._one, args=(data, peer), daemon=True).start()

    def _one(self, data, peer):
        if not self.target:
            return
        self.forwarded += 1
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(3)
            try:
                s.sendto(data, self.target)
                reply = s.recv(65535)
                self.sock.sendto(reply, peer)
            except OSError:
                pass

    def close(self):
        self.running = False
        self.sock.close()


if __name__ == "__main__":
    fwd = StubForwarder(sys.argv[1], int(sys.argv[2]), (sys.argv[3], int(sys.argv[4])))
    print(fwd.port, flush=True)
    threading.Event().wait()
