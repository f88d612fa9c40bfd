"""The policy as a client sees it: registries allowed through their CNAME
chains, denied names answered here and never forwarded, filter-mode CNAME
cloaking, Extended DNS Errors, local answers, --explain and bad rules."""
import os
import struct
import subprocess
import time

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.name
import dns.rdatatype
import pytest

from conftest import ACRDNSD, SRCDIR

RULES = os.path.join(os.path.abspath(SRCDIR), "rules")


def policy_config(up, mode="allowlist", extra=""):
    return f'''
access = [ "127.0.0.0/8" ];
upstreams = [ "{up.addr}" ];
mode = "{mode}";
rules = [ "{RULES}/azure-storage.rules", "{RULES}/registries.rules",
          "{RULES}/object-storage.rules", "{RULES}/doh-canary.rules" ];
registries = (
  {{ login_server = "contoso.azurecr.io";
     data_endpoints = [ "contoso.eastus.data.azurecr.io", "contoso.westus.data.azurecr.io" ]; }}
);
log = {{ level = "info"; queries = "all"; }};
{extra}
'''


def azure_chain(up):
    """contoso.azurecr.io as Azure serves it: through trafficmanager and cloudapp names."""
    up.set("contoso.azurecr.io", records=[
        "contoso.azurecr.io CNAME contoso.privatelink.azurecr.io.",
        "contoso.privatelink.azurecr.io CNAME eus.fe.azcr.io.",
        "eus.fe.azcr.io CNAME eus-acr-reg.trafficmanager.net.",
        "eus-acr-reg.trafficmanager.net A 20.62.128.1",
    ])
    up.set("contoso.eastus.data.azurecr.io", records=[
        "contoso.eastus.data.azurecr.io CNAME d0123.blob.core.windows.net.",
        "d0123.blob.core.windows.net CNAME blob.bl2prdstr01a.store.core.windows.net.",
        "blob.bl2prdstr01a.store.core.windows.net A 20.60.0.1",
    ])


DENIED = [
    "attacker.blob.core.windows.net",
    "ATTACKER.Blob.Core.Windows.Net",
    "x.y.dfs.core.windows.net",
    "acct.z12.blob.storage.azure.net",
    "acct.blob.core.chinacloudapi.cn",
    "acct.blob.core.usgovcloudapi.net",
    "evil.azurecr.io",
    "evil.eastus.data.azurecr.io",
    "contoso.northeurope.data.azurecr.io",   # not one of ours (yet)
    "x.contoso.azurecr.io",
    "bucket.s3.amazonaws.com",
    "bucket.s3.eu-west-1.amazonaws.com",
    "bucket.s3-us-west-2.amazonaws.com",
    "storage.googleapis.com",
    "acct.r2.cloudflarestorage.com",
    "use-application-dns.net",
    "www.example.com",  # allowlist default
]


def test_registry_allowed_through_its_cname_chain(upstream, daemon):
    azure_chain(upstream)
    d = daemon(policy_config(upstream))
    r = d.query("contoso.azurecr.io")
    assert r.rcode() == dns.rcode.NOERROR
    assert r.answer[-1][0].address == "20.62.128.1"
    # The data endpoint's chain runs through blob.core.windows.net and is trusted
    # whole: the name asked for is explicitly allowed.
    r = d.query("contoso.eastus.data.azurecr.io")
    assert r.answer[-1][0].address == "20.60.0.1"


@pytest.mark.parametrize("name", DENIED)
def test_denied_names_never_reach_upstream(upstream, daemon, name):
    d = daemon(policy_config(upstream))
    for rdtype in ("A", "AAAA", "TXT", "MX", "CNAME", "HTTPS", "ANY", "SRV"):
        r = d.query(name, rdtype)
        assert r.rcode() == dns.rcode.NXDOMAIN, (name, rdtype)
        assert not r.answer
        assert r.authority and r.authority[0].rdtype == dns.rdatatype.SOA
        assert r.authority[0].ttl == 60
    r = d.query(name, tcp=True)
    assert r.rcode() == dns.rcode.NXDOMAIN
    assert upstream.count() == 0, upstream.names()


def test_ede_present_with_edns_absent_without(upstream, daemon):
    d = daemon(policy_config(upstream))
    r = d.query("acct.blob.core.windows.net", use_edns=0)
    ede = [o for o in r.options if o.otype == dns.edns.EDE]
    assert len(ede) == 1 and ede[0].code == 15
    assert "deny *.blob.core.windows.net" in ede[0].text
    assert "azure-storage.rules:" in ede[0].text
    r = d.query("acct.blob.core.windows.net", use_edns=False)
    assert r.edns == -1 and r.rcode() == dns.rcode.NXDOMAIN


def test_query_log_names_the_rule(upstream, daemon):
    d = daemon(policy_config(upstream))
    d.query("acct.blob.core.windows.net", "AAAA")
    assert d.wait_log('name=acct.blob.core.windows.net. type=AAAA verdict=deny '
                      'rule="deny *.blob.core.windows.net (')


@pytest.mark.parametrize("how,rcode,soa", [("nodata", dns.rcode.NOERROR, True),
                                           ("refused", dns.rcode.REFUSED, False)])
def test_deny_response(upstream, daemon, how, rcode, soa):
    d = daemon(policy_config(upstream, extra=f'deny_response = "{how}"; deny_ttl = 15;'))
    r = d.query("acct.blob.core.windows.net")
    assert r.rcode() == rcode and not r.answer
    assert bool(r.authority) == soa
    if soa:
        assert r.authority[0].ttl == 15
    assert upstream.count() == 0


def test_filter_mode_forwards_and_denies(upstream, daemon):
    upstream.set("www.example.com", records=["www.example.com A 192.0.2.1"])
    d = daemon(policy_config(upstream, mode="filter"))
    assert d.query("www.example.com").answer[0][0].address == "192.0.2.1"
    assert d.query("acct.blob.core.windows.net").rcode() == dns.rcode.NXDOMAIN
    assert upstream.names() == ["www.example.com."]


def test_filter_mode_cname_into_storage_denied(upstream, daemon):
    upstream.set("innocent.example.com", records=[
        "innocent.example.com CNAME hop.example.net.",
        "hop.example.net CNAME attacker.blob.core.windows.net.",
        "attacker.blob.core.windows.net A 20.60.0.9",
    ])
    # A DNAME alone (no synthesized CNAME) still moves the name under storage.
    upstream.set("acct.dname.example.com", records=[
        "dname.example.com DNAME blob.core.windows.net.",
    ])
    d = daemon(policy_config(upstream, mode="filter"))
    for _ in range(2):  # and not from the cache the second time
        r = d.query("innocent.example.com", use_edns=0)
        assert r.rcode() == dns.rcode.NXDOMAIN and not r.answer
        ede = [o for o in r.options if o.otype == dns.edns.EDE]
        assert ede and "blob.core.windows.net" in ede[0].text
    assert d.wait_log("via=attacker.blob.core.windows.net.")
    r = d.query("acct.dname.example.com")
    assert r.rcode() == dns.rcode.NXDOMAIN


def test_explicit_allow_trusts_chain_in_filter_mode(upstream, daemon):
    azure_chain(upstream)
    d = daemon(policy_config(upstream, mode="filter"))
    r = d.query("contoso.eastus.data.azurecr.io")
    assert r.answer[-1][0].address == "20.60.0.1"


@pytest.mark.parametrize("mode", ["allowlist", "filter"])
def test_login_server_answer_is_cached_and_served_stale(upstream, daemon, mode):
    # Azure's chain runs through contoso.privatelink.azurecr.io, which
    # `deny *.azurecr.io` covers: trusted whole, so kept like any answer.
    azure_chain(upstream)
    upstream.set("contoso.azurecr.io", records=[
        "contoso.azurecr.io CNAME contoso.privatelink.azurecr.io.",
        "contoso.privatelink.azurecr.io CNAME eus.fe.azcr.io.",
        "eus.fe.azcr.io CNAME eus-acr-reg.trafficmanager.net.",
        "eus-acr-reg.trafficmanager.net CNAME eus-acr-reg.eastus.cloudapp.azure.com.",
        "eus-acr-reg.eastus.cloudapp.azure.com A 20.62.128.1",
    ], ttl=1)
    d = daemon(policy_config(upstream, mode=mode))
    for _ in range(3):
        assert d.query("contoso.azurecr.io").answer[-1][0].address == "20.62.128.1"
    assert upstream.count("contoso.azurecr.io") == 1
    # The upstream flaps after the TTL: the login server still resolves.
    time.sleep(1.2)
    upstream.set("contoso.azurecr.io", drop=True)
    r = d.query("contoso.azurecr.io", timeout=8)
    assert r.rcode() == dns.rcode.NOERROR and r.answer[-1][0].address == "20.62.128.1"


HIDDEN = "attacker.blob.core.windows.net"


def hidden_target_reply(query, how):
    """A CNAME into storage that dnspython would never write: its target is
    a forward compression pointer, or the end of 70 chained pointers.
    glibc decodes both and returns the storage address."""
    q = query.question[0]
    target = dns.name.from_text(HIDDEN).to_wire()
    msg = bytearray(struct.pack("!HHHHHH", query.id, 0x8180, 1, 0, 0, 0))
    msg += q.name.to_wire() + struct.pack("!HH", q.rdtype, 1)

    def rr(owner, rdtype, rdata):
        msg.extend(owner + struct.pack("!HHIH", rdtype, 1, 300, len(rdata)) + rdata)

    def ptr(offset):
        return struct.pack("!H", 0xc000 | offset)

    if how == "forward":
        # The CNAME's RDATA points at the next record's owner, further on.
        at = len(msg) + 12 + 2 + 2
        rr(ptr(12), dns.rdatatype.CNAME, ptr(at))
        rr(target, dns.rdatatype.A, bytes([20, 60, 0, 9]))
        count = 2
    else:
        # A TXT record carries the name and 70 pointers, each to the one before.
        base = len(msg) + 2 + 10 + 1
        hops = [ptr(base)]
        for i in range(1, 70):
            hops.append(ptr(base + len(target) + 2 * (i - 1)))
        blob = target + b"".join(hops)
        rr(ptr(12), dns.rdatatype.TXT, bytes([len(blob)]) + blob)
        rr(ptr(12), dns.rdatatype.CNAME, ptr(base + len(target) + 2 * 69))
        rr(ptr(base), dns.rdatatype.A, bytes([20, 60, 0, 9]))
        count = 3
    struct.pack_into("!H", msg, 6, count)
    return bytes(msg)


@pytest.mark.parametrize("how", ["forward", "hops"])
def test_filter_mode_undecodable_target_is_denied(upstream, daemon, how):
    upstream.set("cloak.example.com", craft=lambda q: hidden_target_reply(q, how))
    d = daemon(policy_config(upstream, mode="filter"))
    for _ in range(2):
        r = d.query("cloak.example.com", use_edns=0)
        assert r.rcode() == dns.rcode.NXDOMAIN and not r.answer
        ede = [o for o in r.options if o.otype == dns.edns.EDE]
        assert ede and "cannot be decoded" in ede[0].text
    assert upstream.count("cloak.example.com") == 2  # never cached


SVCB_CASES = {
    # AliasMode: the service is the target's.
    "alias.example.com": ("HTTPS", "0 victim.blob.core.windows.net."),
    # ServiceMode with an address hint: the client connects to the target.
    "service.example.com": ("HTTPS", "1 victim.blob.core.windows.net. alpn=h2 ipv4hint=20.60.0.9"),
    "_8443._foo.api.example.com": ("SVCB", "1 acct.z12.blob.storage.azure.net. port=8443"),
}


@pytest.mark.parametrize("name", sorted(SVCB_CASES))
def test_filter_mode_svcb_target_into_storage_denied(upstream, daemon, name):
    rdtype, rdata = SVCB_CASES[name]
    upstream.set(name, records=[f"{name} {rdtype} {rdata}"])
    d = daemon(policy_config(upstream, mode="filter"))
    r = d.query(name, rdtype, use_edns=0)
    assert r.rcode() == dns.rcode.NXDOMAIN and not r.answer
    ede = [o for o in r.options if o.otype == dns.edns.EDE]
    assert ede and "blob" in ede[0].text


def test_filter_mode_svcb_to_itself_or_elsewhere_passes(upstream, daemon):
    upstream.set("self.example.com", records=["self.example.com HTTPS 1 . alpn=h2"])
    upstream.set("cdn.example.com", records=["cdn.example.com HTTPS 1 edge.example.net. alpn=h3"])
    d = daemon(policy_config(upstream, mode="filter"))
    for name in ("self.example.com", "cdn.example.com"):
        r = d.query(name, "HTTPS")
        assert r.rcode() == dns.rcode.NOERROR and r.answer, name


@pytest.mark.parametrize("mode", ["allowlist", "filter"])
def test_designated_resolver_discovery_is_never_forwarded(upstream, daemon, mode):
    upstream.set_default(records=["_dns.resolver.arpa SVCB 1 doh.example.net. alpn=h2 ipv4hint=192.0.2.53"])
    d = daemon(policy_config(upstream, mode=mode, extra='allow = [ "*.resolver.arpa" ];'))
    for name, rdtype in (("_dns.resolver.arpa", "SVCB"), ("_DNS.Resolver.Arpa", "HTTPS"),
                         ("resolver.arpa", "A"), ("x._dns.resolver.arpa", "SVCB")):
        r = d.query(name, rdtype)
        assert r.rcode() == dns.rcode.NOERROR and not r.answer, (name, rdtype)
        assert r.authority and r.authority[0].rdtype == dns.rdatatype.SOA
        assert r.flags & dns.flags.AA
    assert upstream.count() == 0, upstream.names()
    # Only that zone: a name that merely ends the same way is the policy's.
    assert d.query("xresolver.arpa").rcode() == (
        dns.rcode.NXDOMAIN if mode == "allowlist" else dns.rcode.NOERROR)


def test_local_overrides(upstream, daemon):
    d = daemon(policy_config(upstream, extra='''
local = ( { name = "contoso.azurecr.io"; addresses = [ "10.20.0.5", "10.20.0.6", "fd00::5" ]; ttl = 120; },
          { name = "mirror.lab"; addresses = [ "10.20.0.7" ]; } );'''))
    r = d.query("contoso.azurecr.io")
    assert sorted(rr.address for rr in r.answer[0]) == ["10.20.0.5", "10.20.0.6"]
    assert r.answer[0].ttl == 120 and r.flags & dns.flags.AA
    r = d.query("Contoso.AzureCR.io", "AAAA")
    assert [rr.address for rr in r.answer[0]] == ["fd00::5"]
    assert r.question[0].name.to_text() == "Contoso.AzureCR.io."
    r = d.query("contoso.azurecr.io", "MX")
    assert r.rcode() == dns.rcode.NOERROR and not r.answer and r.authority
    r = d.query("mirror.lab")
    assert r.answer[0][0].address == "10.20.0.7" and r.answer[0].ttl == 300
    r = d.query("mirror.lab", "AAAA")
    assert not r.answer and r.rcode() == dns.rcode.NOERROR
    assert upstream.count() == 0


def run_acrdnsd(*args):
    return subprocess.run([ACRDNSD, *args], capture_output=True, text=True, timeout=20)


def test_explain(upstream, tmp_path):
    conf = tmp_path / "acrdnsd.conf"
    conf.write_text(policy_config(upstream))
    cases = {
        "contoso.azurecr.io": ("allow", "allow contoso.azurecr.io (registry contoso.azurecr.io:"),
        "contoso.eastus.data.azurecr.io": ("allow", "allow contoso.eastus.data.azurecr.io (registry"),
        "other.azurecr.io": ("deny", "deny *.azurecr.io ("),
        "acct.blob.core.windows.net": ("deny", "deny *.blob.core.windows.net ("),
        "www.example.com": ("deny", "default: not on the allowlist"),
    }
    for name, (verdict, rule) in cases.items():
        r = run_acrdnsd("-c", str(conf), "--explain", name)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(f"{name}. {verdict}\n"), r.stdout
        assert f"rule: {rule}" in r.stdout


def test_check_prints_policy_summary(upstream, tmp_path):
    conf = tmp_path / "acrdnsd.conf"
    conf.write_text(policy_config(upstream))
    r = run_acrdnsd("-t", "-c", str(conf))
    assert r.returncode == 0, r.stderr
    assert "azure-storage.rules: 24 rules" in r.stdout
    assert "registries.rules: 71 rules" in r.stdout
    assert "registry: contoso.azurecr.io" in r.stdout
    assert "endpoint: contoso.westus.data.azurecr.io" in r.stdout


def test_example_configuration_checks(tmp_path):
    r = run_acrdnsd("-t", "-c", os.path.join(SRCDIR, "systemd", "acrdnsd.conf.example"))
    assert r.returncode == 0, r.stderr
    assert "registry: contoso.azurecr.io" in r.stdout


def test_bad_rules_file_rejected_at_start(upstream, tmp_path):
    bad = tmp_path / "bad.rules"
    bad.write_text("deny ok.example\nblock evil.example\n")
    conf = tmp_path / "acrdnsd.conf"
    conf.write_text(f'upstreams = [ "{upstream.addr}" ];\nrules = [ "bad.rules" ];\n')
    r = run_acrdnsd("-t", "-c", str(conf))
    assert r.returncode != 0
    assert f"{bad}:2: 'block' is not a rule" in r.stderr
    r = run_acrdnsd("-f", "-c", str(conf))
    assert r.returncode != 0
    assert "bad.rules:2:" in r.stderr


def test_bad_rules_file_on_reload_keeps_old_policy(upstream, daemon, tmp_path):
    rules = tmp_path / "extra.rules"
    rules.write_text("allow www.example.com\n")
    upstream.set("www.example.com", records=["www.example.com A 192.0.2.1"])
    d = daemon(f'upstreams = [ "{upstream.addr}" ];\nrules = [ "extra.rules" ];\n')
    assert d.query("www.example.com").answer
    rules.write_text("allow www.example.com\nallow *.example.org\nfrobnicate\n")
    d.reload()
    assert "reload failed" in d.read_log() and "extra.rules:3:" in d.read_log()
    assert d.query("www.example.com").answer
    assert d.query("www.example.org").rcode() == dns.rcode.NXDOMAIN
    # A good change takes effect, and denies what it no longer allows.
    rules.write_text("allow *.example.org\n")
    d.reload()
    assert "configuration reloaded" in d.read_log()
    assert d.query("www.example.com").rcode() == dns.rcode.NXDOMAIN
    upstream.set("www.example.org", records=["www.example.org A 192.0.2.2"])
    assert d.query("www.example.org").answer[0][0].address == "192.0.2.2"


def test_nul_and_dot_in_labels_do_not_match_allowed_names(upstream, daemon):
    d = daemon(policy_config(upstream))
    # contoso.azurecr.io\000.evil.example and "contoso.azurecr.io" as one label
    names = [
        dns.name.Name([b"contoso", b"azurecr", b"io\x00", b"evil", b"example", b""]),
        dns.name.Name([b"contoso.azurecr.io", b"evil", b"example", b""]),
        dns.name.Name([b"contoso.azurecr.io", b""]),
    ]
    for name in names:
        q = dns.message.make_query(name, "A")
        r = d.send(q)
        assert r.rcode() == dns.rcode.NXDOMAIN, name
    assert upstream.count() == 0
