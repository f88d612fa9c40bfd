"""Network namespaces and veth pairs that a test creates for itself and
removes afterwards.  Tests that need them skip, saying why, where the
kernel or the sandbox does not allow them."""
import os
import shutil
import subprocess

import pytest


def sh(*args, check=True, **kw):
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=30, **kw)


def netns_or_skip():
    """Skip the calling test unless namespaces (and ip) can be used here."""
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("network namespaces need root and ip(8) from iproute2")
    name = f"acrprobe{os.getpid()}"
    r = sh("ip", "netns", "add", name, check=False)
    if r.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {r.stderr.strip()}")
    try:
        # ip netns exec remounts /sys in a mount namespace of its own, which
        # fails where / is not a mount point (a plain chroot, say).
        r = sh("ip", "netns", "exec", name, "true", check=False)
        if r.returncode != 0:
            pytest.skip(f"'ip netns exec' does not work here: {r.stderr.strip()} "
                        "(is / a mount point? not in a plain chroot)")
    finally:
        sh("ip", "netns", "del", name, check=False)


class Netns:
    """One namespace with loopback up; `run` executes inside it."""

    def __init__(self, name):
        self.name = name
        sh("ip", "netns", "add", name)
        self.run("ip", "link", "set", "lo", "up")

    def run(self, *args, check=True, **kw):
        return sh("ip", "netns", "exec", self.name, *args, check=check, **kw)

    def popen(self, args, **kw):
        return subprocess.Popen(["ip", "netns", "exec", self.name, *args], **kw)

    def delete(self):
        sh("ip", "netns", "del", self.name, check=False)
        shutil.rmtree(f"/etc/netns/{self.name}", ignore_errors=True)


def veth(a, a_addr, b, b_addr, name):
    """A veth pair between namespaces a and b (None: this one), with addresses in CIDR form."""
    ha, hb = f"{name}a", f"{name}b"
    sh("ip", "link", "add", ha, "type", "veth", "peer", "name", hb)
    for ns, dev, addr in ((a, ha, a_addr), (b, hb, b_addr)):
        if ns is not None:
            sh("ip", "link", "set", dev, "netns", ns.name)
            ns.run("ip", "addr", "add", addr, "dev", dev)
            ns.run("ip", "link", "set", dev, "up")
        else:
            sh("ip", "addr", "add", addr, "dev", dev)
            sh("ip", "link", "set", dev, "up")
    return ha, hb


def in_netns(ns, fn):
    """Call fn() in a thread that has entered ns's network namespace, and
    return what it returns: the sockets it opens live in ns, and stay usable
    from any thread (Python 3.11 has no os.setns)."""
    import ctypes
    import threading
    out = {}

    def run():
        libc = ctypes.CDLL(None, use_errno=True)
        with open(f"/run/netns/{ns.name}") as f:
            if libc.setns(f.fileno(), 0x40000000) != 0:  # CLONE_NEWNET
                out["err"] = OSError(ctypes.get_errno(), f"setns {ns.name}")
                return
        try:
            out["val"] = fn()
        except Exception as e:  # re-raised in the caller
            out["err"] = e

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "err" in out:
        raise out["err"]
    return out["val"]
