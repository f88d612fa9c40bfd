"""Real clients against the real daemon: dig (BIND) and kdig (Knot)."""
import shutil
import subprocess

import pytest

from conftest import basic_config
from test_policy import policy_config


def run(tool, *args):
    if not shutil.which(tool):
        pytest.skip(f"{tool} is not installed (apt-get install bind9-dnsutils knot-dnsutils)")
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=20).stdout


def test_dig_allowed_and_denied(upstream, daemon):
    upstream.set("contoso.azurecr.io", records=["contoso.azurecr.io A 20.62.128.1"])
    d = daemon(policy_config(upstream))
    out = run("dig", "@127.0.0.1", "-p", str(d.port), "contoso.azurecr.io", "A", "+short")
    assert out.strip() == "20.62.128.1"
    out = run("dig", "@127.0.0.1", "-p", str(d.port), "acct.blob.core.windows.net", "A")
    assert "status: NXDOMAIN" in out
    assert "EDE: 15 (Blocked)" in out
    assert "deny *.blob.core.windows.net" in out
    assert upstream.count("acct.blob.core.windows.net") == 0


def test_dig_retries_truncated_answer_over_tcp(upstream, daemon):
    upstream.set("big.example.com",
                 records=[f"big.example.com TXT \"{'y' * 200} {i}\"" for i in range(20)])
    d = daemon(basic_config(upstream))
    out = run("dig", "@127.0.0.1", "-p", str(d.port), "big.example.com", "TXT", "+bufsize=1232")
    assert "Truncated, retrying in TCP mode" in out
    assert out.count('y' * 200) == 20


def test_kdig_udp_tcp_and_edns(upstream, daemon):
    upstream.set("k.example.com", records=["k.example.com AAAA 2001:db8::1"])
    d = daemon(basic_config(upstream))
    out = run("kdig", "@127.0.0.1", "-p", str(d.port), "k.example.com", "AAAA", "+short")
    assert out.strip() == "2001:db8::1"
    out = run("kdig", "@127.0.0.1", "-p", str(d.port), "+tcp", "k.example.com", "AAAA")
    assert "2001:db8::1" in out and "TCP" in out
    out = run("kdig", "@127.0.0.1", "-p", str(d.port), "+edns=1", "k.example.com", "AAAA")
    assert "BADVERS" in out
