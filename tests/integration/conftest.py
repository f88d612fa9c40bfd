"""Fixtures: a scripted upstream and the real acrdnsd started against it."""
import json
import os
import re
import signal
import socket
import subprocess
import textwrap
import time

import dns.edns
import dns.message
import dns.query
import dns.rcode
import pytest

from dnsfake import FakeUpstream

ACRDNSD = os.environ.get("ACRDNSD") or os.path.join(
    os.path.dirname(__file__), "..", "..", "daemon", "acrdnsd")
ACRDNSCTL = os.path.join(os.path.dirname(ACRDNSD), "acrdnsctl")
SRCDIR = os.environ.get("ACRDNS_SRCDIR") or os.path.join(os.path.dirname(__file__), "..", "..")


def ctl(sock, *args):
    """acrdnsctl against a control socket: the completed process."""
    return subprocess.run([ACRDNSCTL, "-s", str(sock), *args], capture_output=True, text=True,
                          timeout=10)


def free_port(host="127.0.0.1"):
    """A port free for both UDP and TCP on host."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        t = socket.socket(family, socket.SOCK_STREAM)
        t.bind((host, 0))
        port = t.getsockname()[1]
        u = socket.socket(family, socket.SOCK_DGRAM)
        try:
            u.bind((host, port))
        except OSError:
            continue
        finally:
            u.close()
            t.close()
        return port
    raise RuntimeError("no free port")


class Daemon:
    """One acrdnsd process with its configuration file and log."""

    def __init__(self, tmp_path, config, host="127.0.0.1"):
        self.tmp = tmp_path
        self.host = host
        self.port = free_port(host)
        self.conf = tmp_path / "acrdnsd.conf"
        self.logfile = tmp_path / "acrdnsd.log"
        self.proc = None
        self.env = None
        self.prefix = []   # e.g. ["ip", "netns", "exec", NAME]
        self.write_config(config)

    def write_config(self, config):
        text = textwrap.dedent(config).replace("@PORT@", str(self.port)).replace(
            "@SRCDIR@", os.path.abspath(SRCDIR))
        if not re.search(r"^\s*listen\s*=", text, re.M):
            addr = f"[{self.host}]" if ":" in self.host else self.host
            text = f'listen = [ "{addr}:{self.port}" ];\n' + text
        if "control_socket" not in text:
            # Never the host's /run/acrdns/control.sock: a test is not the host's daemon.
            text += f'\ncontrol_socket = "{self.tmp}/control.sock";\n'
        workers = os.environ.get("ACRDNS_TEST_WORKERS")
        if workers and not re.search(r"^\s*workers\s*=", text, re.M):
            # The whole suite again with worker threads (CI's distcheck run).
            text += f"\nworkers = {int(workers)};\n"
        if not re.search(r"^\s*user\s*=", text, re.M):
            # Test files live in pytest's 0700 directories, which only root can
            # read after start-up; test_operations covers the privilege drop.
            text += '\nuser = "root";\n'
        self.conf.write_text(text)

    def start(self, wait=True):
        for attempt in range(3):
            self.log_start = len(self.read_log())
            self.log = open(self.logfile, "ab")
            env = dict(os.environ, **(self.env or {}))
            # ACRDNS_WRAPPER runs the daemon under a tool, e.g.
            # "valgrind --leak-check=full --error-exitcode=99" (timing tests will not hold).
            wrapper = os.environ.get("ACRDNS_WRAPPER", "").split()
            self.proc = subprocess.Popen(self.prefix + wrapper + [ACRDNSD, "-f", "-c", str(self.conf)],
                                         stdout=self.log, stderr=self.log, env=env)
            if not wait:
                return self
            try:
                self.wait_ready()
                return self
            except RuntimeError:
                # Another process took the port between free_port() and bind().
                if "Address already in use" not in self.read_log()[self.log_start:] or attempt == 2:
                    raise
                self.log.close()
                old = self.port
                self.port = free_port(self.host)
                self.conf.write_text(self.conf.read_text().replace(f":{old}\"", f":{self.port}\""))
        return self

    def wait_ready(self):
        deadline = time.monotonic() + (30 if os.environ.get("ACRDNS_WRAPPER") else 5)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"acrdnsd exited {self.proc.returncode}:\n{self.read_log()}")
            if "started" in self.read_log()[self.log_start:]:
                return
            time.sleep(0.02)
        raise RuntimeError("acrdnsd did not start:\n" + self.read_log())

    def read_log(self):
        try:
            return self.logfile.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, text, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.read_log():
                return True
            time.sleep(0.02)
        return False

    def signal(self, sig):
        self.proc.send_signal(sig)

    def _reload_marks(self):
        text = self.read_log()
        return text.count("configuration reloaded") + text.count("reload failed")

    def reload(self, config=None):
        """Rewrite the configuration (when given), SIGHUP, and wait for the verdict."""
        if config is not None:
            self.write_config(config)
        before = self._reload_marks()
        self.signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while self._reload_marks() == before and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()
        return self.proc.returncode if self.proc else None

    def query(self, name, rdtype="A", tcp=False, timeout=5.0, use_edns=0, want_dnssec=False,
              payload=1232, **kw):
        q = dns.message.make_query(name, rdtype, use_edns=use_edns if use_edns is not False else None,
                                   want_dnssec=want_dnssec, payload=payload, **kw)
        if use_edns is False:
            q.use_edns(False)
        return self.send(q, tcp=tcp, timeout=timeout)

    def send(self, q, tcp=False, timeout=5.0):
        if tcp:
            return dns.query.tcp(q, self.host, port=self.port, timeout=timeout)
        return dns.query.udp(q, self.host, port=self.port, timeout=timeout,
                             ignore_unexpected=True)

    def raw(self, data, timeout=1.0):
        """Send raw bytes over UDP; return the raw reply or None."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.sendto(data, (self.host, self.port))
            try:
                return s.recv(65535)
            except socket.timeout:
                return None

    def alive(self):
        return self.proc.poll() is None

    def ctl(self, *args, check=False):
        """acrdnsctl against this daemon's control socket: the completed process."""
        sock = re.search(r'^\s*control_socket\s*=\s*"([^"]+)"', self.conf.read_text(), re.M).group(1)
        r = ctl(sock, *args)
        if check:
            assert r.returncode == 0, r.stderr
        return r

    def status(self):
        """The daemon's `acrdnsctl --json status`, as a dict."""
        return json.loads(self.ctl("--json", "status", check=True).stdout)

    def wait_for(self, predicate, timeout=5.0):
        """Poll predicate() until it holds; its last value."""
        return wait_for(predicate, timeout)


LOGIN = "contoso.azurecr.io"   # the registry the tests use


def wait_for(predicate, timeout=5.0):
    """Poll predicate() until it holds or timeout passes; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(0.02)


def _fake_upstream():
    """A scripted upstream; at the end the test fails if anything that
    reached it was no DNS query."""
    up = FakeUpstream()
    yield up
    up.close()
    assert not up.unparsed, f"the upstream received messages it cannot parse: {up.unparsed[:3]}"


@pytest.fixture
def upstream():
    yield from _fake_upstream()


@pytest.fixture
def upstream2():
    yield from _fake_upstream()


@pytest.fixture
def daemon(tmp_path):
    """Factory: daemon(config_text) starts acrdnsd with that configuration."""
    started = []

    def make(config, start=True, host="127.0.0.1"):
        d = Daemon(tmp_path, config, host=host)
        started.append(d)
        if start:
            d.start()
        return d

    yield make
    for d in started:
        rc = d.stop()
        if getattr(d, "exit_expected", False):
            continue
        # A daemon that died on its own during a test is a failure in itself.
        assert rc in (0, None, -signal.SIGTERM), f"acrdnsd exit {rc}:\n{d.read_log()[-3000:]}"


def basic_config(up, extra="", mode="filter"):
    return f'''
access = [ "127.0.0.0/8", "::1/128" ];
upstreams = [ "{up.addr}" ];
mode = "{mode}";
log = {{ level = "debug"; queries = "all"; }};
{extra}
'''


def pytest_terminal_summary(terminalreporter):
    """Under make check the whole report goes to run.sh.log: name each failed
    test, with the first lines of why, on the terminal too."""
    fd = os.environ.get("ACRDNS_CONSOLE_FD")
    if not fd:
        return
    bad = terminalreporter.stats.get("failed", []) + terminalreporter.stats.get("error", [])
    if not bad:
        return
    try:
        console = os.fdopen(int(fd), "w", closefd=False)
    except (OSError, ValueError):
        return
    with console:
        for rep in bad:
            crash = getattr(rep.longrepr, "reprcrash", None)
            why = (crash.message if crash else str(rep.longrepr)).splitlines()
            console.write(f"integration: {rep.nodeid} ({rep.when}): {why[0] if why else ''}\n")
            for line in why[1:6]:
                console.write(f"integration:     {line}\n")
