"""Hostile upstream answers as a client sees them: records outside the
question's chain scrubbed (first answer and cached), every name a client
follows checked as a target (DNAME rewrites, SRV, MX, NAPTR), blocks
decided upstream (a chain into .invalid), and no TTL above cache.max_ttl."""
import dns.edns
import dns.flags
import dns.rcode
import dns.rdatatype
import pytest

from test_faults import stats
from test_policy import azure_chain, hidden_target_reply, policy_config

VICTIM = "victim.blob.core.windows.net"


def owners(r):
    """Every owner name in every section, lowercase without the dot."""
    return {rrset.name.to_text().lower().rstrip(".")
            for section in (r.answer, r.authority, r.additional) for rrset in section}


def ede_text(r):
    ede = [o for o in r.options if o.otype == dns.edns.EDE]
    return ede[0].text if ede else None


def test_filter_mode_dname_rewrite_into_storage_denied(upstream, daemon):
    # The DNAME target core.windows.net is not denied, but the question as
    # the DNAME rewrites it (RFC 6672 2.2) is; no synthesized CNAME.
    upstream.set("acct.blob.dn.example.com", records=[
        "dn.example.com DNAME core.windows.net.",
        "acct.blob.core.windows.net A 20.60.0.5",
    ])
    upstream.set("www.ok.example.com", records=[
        "ok.example.com DNAME example.net.",
        "www.example.net A 192.0.2.7",
    ])
    d = daemon(policy_config(upstream, mode="filter"))
    for _ in range(2):  # and not from the cache the second time
        r = d.query("acct.blob.dn.example.com", use_edns=0)
        assert r.rcode() == dns.rcode.NXDOMAIN and not r.answer
        assert "deny *.blob.core.windows.net" in ede_text(r)
    assert d.wait_log("via=acct.blob.core.windows.net.")
    # A DNAME elsewhere still resolves.
    r = d.query("www.ok.example.com")
    assert r.rcode() == dns.rcode.NOERROR
    assert [rr.address for rrset in r.answer if rrset.rdtype == dns.rdatatype.A
            for rr in rrset] == ["192.0.2.7"]


TARGET_CASES = {
    "_https._tcp.x.example.com": ("SRV", f"0 0 443 {VICTIM}."),
    "mx.example.com": ("MX", f"10 {VICTIM}."),
    "naptr.example.com": ("NAPTR", f'100 10 "S" "SIP+D2T" "" {VICTIM}.'),
}


@pytest.mark.parametrize("name", sorted(TARGET_CASES))
def test_filter_mode_srv_mx_naptr_target_into_storage_denied(upstream, daemon, name):
    rdtype, rdata = TARGET_CASES[name]
    upstream.set(name, records=[f"{name} {rdtype} {rdata}"],
                 additional=[f"{VICTIM} A 20.60.0.9"])
    d = daemon(policy_config(upstream, mode="filter"))
    for _ in range(2):
        r = d.query(name, rdtype)
        assert r.rcode() == dns.rcode.NXDOMAIN, r
        assert VICTIM not in owners(r)
    assert d.wait_log(f"via={VICTIM}.")


def test_filter_mode_srv_elsewhere_keeps_its_addresses(upstream, daemon):
    name = "_https._tcp.y.example.com"
    upstream.set(name, records=[f"{name} SRV 0 0 443 web.example.net."],
                 additional=["web.example.net A 192.0.2.80", f"{VICTIM} A 20.60.0.9",
                             "stray.example.org A 192.0.2.99"])
    d = daemon(policy_config(upstream, mode="filter"))
    for _ in range(2):
        r = d.query(name, "SRV")
        assert r.rcode() == dns.rcode.NOERROR
        assert r.answer[0][0].target.to_text() == "web.example.net."
        assert owners(r) == {name.lower(), "web.example.net"}


def hostile_azure(upstream):
    """contoso.azurecr.io through Azure's chain, with a storage account's
    address added to the answer, and an NS for blob storage with glue."""
    azure_chain(upstream)
    b = upstream.script["contoso.azurecr.io."]
    b.records.append(f"{VICTIM} A 20.60.0.9")
    b.authority = ["blob.core.windows.net NS ns1.victim.blob.core.windows.net.",
                   "azurecr.io NS ns1-01.azure-dns.com."]
    b.additional = ["ns1.victim.blob.core.windows.net A 20.60.0.10",
                    f"{VICTIM} A 20.60.0.9"]


@pytest.mark.parametrize("mode", ["allowlist", "filter"])
def test_allowed_answer_scrubbed_before_the_cache(upstream, daemon, mode):
    hostile_azure(upstream)
    d = daemon(policy_config(upstream, mode=mode))
    for i in range(2):  # the first answer, then the cached one
        r = d.query("contoso.azurecr.io")
        assert r.rcode() == dns.rcode.NOERROR
        # Azure's chain stays whole, through names allowlist mode denies.
        assert [rrset.name.to_text() for rrset in r.answer] == [
            "contoso.azurecr.io.", "contoso.privatelink.azurecr.io.",
            "eus.fe.azcr.io.", "eus-acr-reg.trafficmanager.net."]
        assert r.answer[-1][0].address == "20.62.128.1"
        assert not any("blob.core.windows.net" in o for o in owners(r)), r
        addresses = {rr.address for section in (r.answer, r.additional) for rrset in section
                     if rrset.rdtype == dns.rdatatype.A for rr in rrset}
        assert addresses == {"20.62.128.1"}
        # The NS of a zone above the chain stays.
        assert [rrset.name.to_text() for rrset in r.authority] == ["azurecr.io."]
    assert upstream.count("contoso.azurecr.io") == 1
    assert stats(d)["scrubbed"] >= 3


@pytest.mark.parametrize("how", ["forward", "hops"])
def test_allowed_answer_that_cannot_be_scrubbed_is_denied(upstream, daemon, how):
    # A CNAME whose target this decoder refuses (glibc follows it into
    # storage) cannot be rebuilt: even an allowed name's answer is refused,
    # or one undecodable record would carry everything past the scrubber.
    upstream.set("contoso.azurecr.io", craft=lambda q: hidden_target_reply(q, how))
    d = daemon(policy_config(upstream, mode="allowlist"))
    for _ in range(2):
        r = d.query("contoso.azurecr.io", use_edns=0)
        assert r.rcode() == dns.rcode.NXDOMAIN and not r.answer
        assert "cannot be decoded" in ede_text(r)
    assert upstream.count("contoso.azurecr.io") == 2  # never cached


@pytest.mark.parametrize("mode,allow", [("filter", False), ("allowlist", True)])
def test_chain_into_invalid_is_blocked_upstream(upstream, daemon, mode, allow):
    upstream.set("blocked.example.com", ttl=1000000000, records=[
        "blocked.example.com CNAME blockpolicy.azuredns.invalid.",
    ])
    extra = 'deny_ttl = 120;\n' + ('allow = [ "blocked.example.com" ];' if allow else "")
    d = daemon(policy_config(upstream, mode=mode, extra=extra))
    for _ in range(2):
        r = d.query("blocked.example.com", use_edns=0)
        assert r.rcode() == dns.rcode.NXDOMAIN and not r.answer
        assert "blocked upstream" in ede_text(r)
        assert "blockpolicy.azuredns.invalid" in ede_text(r)
        assert r.authority and all(rrset.ttl <= 120 for rrset in r.authority)
    assert d.wait_log("chain ends in blockpolicy.azuredns.invalid.")
    assert stats(d)["upstream_blocked"] == 2


def test_no_ttl_above_max_ttl(upstream, daemon):
    upstream.set("long.example.com", ttl=1000000000, records=[
        "long.example.com CNAME host.example.net.", "host.example.net A 192.0.2.5"])
    upstream.set("gone.example.com", ttl=1000000000, rcode=dns.rcode.NXDOMAIN, authority=[
        "example.com SOA ns.example.com. h.example.com. 1 2 3 4 1000000000"])
    d = daemon(policy_config(upstream, mode="filter", extra="cache = { max_ttl = 3600; };"))
    for name in ("long.example.com", "gone.example.com"):
        for _ in range(2):  # first answer, then from the cache
            r = d.query(name)
            ttls = [rrset.ttl for section in (r.answer, r.authority, r.additional)
                    for rrset in section]
            assert ttls and max(ttls) <= 3600, (name, ttls)
    assert upstream.count("long.example.com") == 1
