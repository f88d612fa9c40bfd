"""Audit mode, the roll-out dry run: names the policy would deny are
forwarded, cached and answered, and logged and counted under the verdict
"audit"; `acrdnsctl audit` lists them busiest first, across reloads, cache
hits on worker threads included."""
import json
import os
import subprocess

import dns.edns
import dns.message
import dns.query
import dns.rcode

from conftest import ACRDNSD, SRCDIR

ACRDNSCTL = os.path.join(os.path.dirname(ACRDNSD), "acrdnsctl")
RULES = os.path.join(os.path.abspath(SRCDIR), "rules")


def ctl(tmp_path, *args):
    r = subprocess.run([ACRDNSCTL, "-s", str(tmp_path / "control.sock"), *args],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    return r.stdout


def audit_config(up, mode="allowlist", extra="", queries="denied"):
    return f'''
access = [ "127.0.0.0/8" ];
upstreams = [ "{up.addr}" ];
mode = "{mode}";
audit = true;
rules = [ "{RULES}/azure-storage.rules", "{RULES}/registries.rules" ];
registries = ( {{ login_server = "contoso.azurecr.io";
                  data_endpoints = [ "contoso.eastus.data.azurecr.io" ]; }} );
local = ( {{ name = "mirror.lab"; addresses = [ "10.0.0.5" ]; }} );
log = {{ level = "info"; queries = "{queries}"; }};
{extra}
'''


def audit_lines(d):
    return [l for l in d.read_log().splitlines() if "verdict=audit" in l]


def test_audit_forwards_and_lists_what_allowlist_would_deny(upstream, daemon, tmp_path):
    storage = "attacker.blob.core.windows.net"
    upstream.set(storage, records=[f"{storage} A 20.60.9.9"])
    upstream.set("unlisted.example", records=["unlisted.example A 192.0.2.7"])
    upstream.set("contoso.azurecr.io", records=["contoso.azurecr.io A 20.62.128.1"])
    d = daemon(audit_config(upstream))
    assert "audit mode: nothing is denied" in d.read_log()
    for _ in range(3):
        r = d.query(storage, use_edns=0)
        assert r.rcode() == dns.rcode.NOERROR
        assert r.answer[0][0].address == "20.60.9.9"
        assert not [o for o in r.options if o.otype == dns.edns.EDE]
    assert upstream.count(storage) == 1          # forwarded once, then cached
    assert d.query("unlisted.example").answer[0][0].address == "192.0.2.7"
    # What no rule denies, and the local and DDR answers, stay as they were.
    assert d.query("contoso.azurecr.io").rcode() == dns.rcode.NOERROR
    assert d.query("mirror.lab").answer[0][0].address == "10.0.0.5"
    r = d.query("_dns.resolver.arpa", "SVCB")
    assert r.rcode() == dns.rcode.NOERROR and not r.answer
    assert upstream.count("_dns.resolver.arpa") == 0
    # Logged (queries = "denied") with the rule, never as denied or blocked.
    lines = audit_lines(d)
    assert len([l for l in lines if storage in l]) == 3, d.read_log()
    assert 'rule="deny *.blob.core.windows.net' in lines[0]
    assert any("unlisted.example" in l and "not on the allowlist" in l for l in lines)
    for l in lines:
        assert "denied" not in l and "blocked" not in l and "verdict=deny" not in l
    assert "contoso.azurecr.io" not in "".join(lines)
    # acrdnsctl audit: busiest first, with the rule and times.
    text = ctl(tmp_path, "audit").splitlines()
    rows = [l for l in text if not l.startswith("#")]
    assert rows[0].startswith(f"3 {storage} ") and "deny *.blob.core.windows.net" in rows[0]
    assert rows[1].startswith("1 unlisted.example ")
    assert len(rows) == 2
    j = json.loads(ctl(tmp_path, "--json", "audit"))
    assert j["audit"] is True and j["questions"] == 4 and j["unlisted"] == 0
    top = j["names"][0]
    assert top["name"] == storage and top["count"] == 3
    assert top["rule"].startswith("deny *.blob.core.windows.net (")
    assert top["first"] <= top["last"] and top["first"].endswith("Z")
    stats = json.loads(ctl(tmp_path, "--json", "stats"))
    assert stats["audited"] == 4 and stats["denied"] == 0
    assert 'acrdns_queries_total{transport="udp",verdict="audit"} 4' in ctl(tmp_path, "metrics")
    # A reload keeps the list; a reset empties it.
    d.reload()
    d.query(storage)
    j = json.loads(ctl(tmp_path, "--json", "audit"))
    assert j["names"][0]["name"] == storage and j["names"][0]["count"] == 4
    assert ctl(tmp_path, "audit", "reset").strip() == "audit table reset"
    j = json.loads(ctl(tmp_path, "--json", "audit"))
    assert j["names"] == [] and j["questions"] == 0


def test_without_audit_the_same_names_are_denied(upstream, daemon, tmp_path):
    d = daemon(audit_config(upstream).replace("audit = true;", "audit = false;"))
    assert d.query("attacker.blob.core.windows.net").rcode() == dns.rcode.NXDOMAIN
    assert upstream.count() == 0
    j = json.loads(ctl(tmp_path, "--json", "audit"))
    assert j["audit"] is False and j["names"] == []


def test_audit_counts_cache_hits_answered_by_workers(upstream, daemon, tmp_path):
    name = "x.blob.core.windows.net"
    upstream.set(name, records=[f"{name} A 20.60.1.1"])
    d = daemon(audit_config(upstream, extra="workers = 3;", queries="none"))
    for _ in range(40):
        # A new socket each time: the kernel spreads them over the loops.
        r = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=d.port, timeout=3)
        assert r.answer[0][0].address == "20.60.1.1"
    assert upstream.count(name) == 1
    j = json.loads(ctl(tmp_path, "--json", "audit"))
    assert j["names"][0]["count"] == 40 and j["questions"] == 40
    assert json.loads(ctl(tmp_path, "--json", "stats"))["audited"] == 40
    assert not audit_lines(d)        # queries = "none": counted, not logged


def test_audit_answers_filter_mode_chains_into_denied_names(upstream, daemon, tmp_path):
    upstream.set("cloaked.example", records=[
        "cloaked.example CNAME evil.blob.core.windows.net.",
        "evil.blob.core.windows.net A 20.60.6.6"])
    d = daemon(audit_config(upstream, mode="filter"))
    for _ in range(2):
        r = d.query("cloaked.example", use_edns=0)
        assert r.rcode() == dns.rcode.NOERROR
        assert r.answer[-1][0].address == "20.60.6.6"
        assert not [o for o in r.options if o.otype == dns.edns.EDE]
    # Not cached, as without audit: each question is checked and counted.
    assert upstream.count("cloaked.example") == 2
    lines = [l for l in audit_lines(d) if "cloaked.example" in l]
    assert len(lines) == 2 and "via=evil.blob.core.windows.net" in lines[0], d.read_log()
    j = json.loads(ctl(tmp_path, "--json", "audit"))
    e = j["names"][0]
    assert e["name"] == "cloaked.example" and e["count"] == 2
    assert "deny *.blob.core.windows.net" in e["rule"] and "evil.blob.core.windows.net" in e["rule"]
    stats = json.loads(ctl(tmp_path, "--json", "stats"))
    assert stats["cname_denied"] == 0 and stats["audited"] == 2


def test_audit_answers_a_dname_rewrite_into_denied_names(upstream, daemon, tmp_path):
    # Filter mode denies the question as the DNAME rewrites it (RFC 6672
    # 2.2); audit mode answers it, and logs and counts it under the name asked.
    upstream.set("acct.blob.dn.example.com", records=[
        "dn.example.com DNAME core.windows.net.",
        "acct.blob.core.windows.net A 20.60.0.5"])
    d = daemon(audit_config(upstream, mode="filter"))
    r = d.query("acct.blob.dn.example.com", use_edns=0)
    assert r.rcode() == dns.rcode.NOERROR
    assert r.answer[-1][0].address == "20.60.0.5"
    assert not [o for o in r.options if o.otype == dns.edns.EDE]
    lines = [l for l in audit_lines(d) if "acct.blob.dn.example.com" in l]
    assert lines and "via=acct.blob.core.windows.net" in lines[0], d.read_log()
    e = json.loads(ctl(tmp_path, "--json", "audit"))["names"][0]
    assert e["name"] == "acct.blob.dn.example.com" and "deny *.blob.core.windows.net" in e["rule"]
    stats = json.loads(ctl(tmp_path, "--json", "stats"))
    assert stats["cname_denied"] == 0 and stats["audited"] == 1


def test_audit_keeps_blocks_decided_upstream(upstream, daemon, tmp_path):
    # A chain into .invalid is the upstream's own block, no rule of ours:
    # a dry run of our rules still answers it as blocked, and audits nothing.
    upstream.set("blocked.example.com", records=[
        "blocked.example.com CNAME blockpolicy.azuredns.invalid."])
    d = daemon(audit_config(upstream, mode="filter"))
    r = d.query("blocked.example.com", use_edns=0)
    assert r.rcode() == dns.rcode.NXDOMAIN and not r.answer
    ede = [o for o in r.options if o.otype == dns.edns.EDE]
    assert ede and "blocked upstream" in ede[0].text
    stats = json.loads(ctl(tmp_path, "--json", "stats"))
    assert stats["upstream_blocked"] == 1 and stats["audited"] == 0


def test_audit_must_be_a_boolean(tmp_path):
    conf = tmp_path / "a.conf"
    conf.write_text('upstreams = [ "127.0.0.1" ];\naudit = "yes";\n')
    out = subprocess.run([ACRDNSD, "-t", "-c", str(conf)], capture_output=True, text=True)
    assert out.returncode != 0 and ":2: 'audit' must be true or false" in out.stderr, out.stderr
    # Not 127.0.0.1: that is the default listener, which -t rejects as an upstream.
    conf.write_text('upstreams = [ "192.0.2.1" ];\naudit = true;\n')
    out = subprocess.run([ACRDNSD, "-t", "-c", str(conf)], capture_output=True, text=True)
    assert out.returncode == 0 and "audit: on" in out.stdout
