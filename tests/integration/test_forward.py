"""Per-zone upstreams (`forward`): a Private Link zone answered by its own
server while everything else goes to `upstreams`, with two scripted
upstreams that record what reached them.  The policy still decides first;
a zone whose server is dead fails only its own names; reload, explain,
-t, metrics and loop detection know every zone."""
import json
import socket
import subprocess
import threading
import time

import dns.rcode
import pytest

from conftest import ACRDNSD
from stubfwd import StubForwarder

ZONE = "privatelink.azurecr.io"
PRIVATE = f"contoso.{ZONE}"              # only the zone's server knows it
PUBLIC = "mcr.microsoft.com"
NEAR = "xprivatelink.azurecr.io"         # shares the zone's last bytes, not its labels


def forward_config(default, zone_up, mode="filter", extra="", zone=ZONE):
    return f'''
access = [ "127.0.0.0/8", "::1/128" ];
upstreams = [ "{default.addr}" ];
forward = (
  {{ zone = "{zone}"; upstreams = [ "{zone_up.addr}" ]; }}
);
mode = "{mode}";
log = {{ level = "debug"; queries = "all"; }};
{extra}
'''


def address(r):
    return [rr.address for rrset in r.answer for rr in rrset if hasattr(rr, "address")]


@pytest.fixture
def both(upstream, upstream2):
    """upstream answers public names; upstream2 is the zone's server."""
    upstream.set_default(records=[])
    upstream.set(PUBLIC, records=[f"{PUBLIC} A 204.79.197.219"])
    upstream.set(NEAR, records=[f"{NEAR} A 192.0.2.9"])
    upstream2.set(PRIVATE, records=[f"{PRIVATE} A 10.1.0.20"])
    upstream2.set(f"other.{ZONE}", records=[f"other.{ZONE} A 10.1.0.21"])
    return upstream, upstream2


def test_zone_names_reach_only_the_zone_server(both, daemon):
    default, zone_up = both
    d = daemon(forward_config(default, zone_up))
    r = d.query(PRIVATE)
    assert r.rcode() == dns.rcode.NOERROR and address(r) == ["10.1.0.20"]
    assert zone_up.count(PRIVATE) == 1 and default.count(PRIVATE) == 0
    # Over TCP too, and the zone's apex itself.
    zone_up.set(ZONE, records=[f"{ZONE} A 10.1.0.1"])
    assert address(d.query(ZONE, tcp=True)) == ["10.1.0.1"]
    assert default.count(ZONE) == 0
    # Everything else goes to `upstreams`, including a name that only ends
    # in the zone's bytes: zones match whole labels.
    assert address(d.query(PUBLIC)) == ["204.79.197.219"]
    assert address(d.query(NEAR)) == ["192.0.2.9"]
    assert zone_up.count(PUBLIC) == 0 and zone_up.count(NEAR) == 0
    assert default.count(PUBLIC) == 1 and default.count(NEAR) == 1


def test_identical_questions_to_a_zone_are_merged(both, daemon):
    default, zone_up = both
    zone_up.set(PRIVATE, records=[f"{PRIVATE} A 10.1.0.20"], delay=0.2)
    d = daemon(forward_config(default, zone_up))
    socks = []
    for _ in range(5):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(3)
        q = dns.message.make_query(PRIVATE, "A")
        s.sendto(q.to_wire(), ("127.0.0.1", d.port))
        socks.append((s, q))
    for s, q in socks:
        r = dns.message.from_wire(s.recv(65535))
        assert r.id == q.id and address(r) == ["10.1.0.20"]
        s.close()
    assert zone_up.count(PRIVATE) == 1 and default.count(PRIVATE) == 0


def test_policy_decides_before_any_zone(both, daemon):
    """A forward zone allows nothing: in allowlist mode a zone name that no
    rule allows is denied, and neither server hears of it."""
    default, zone_up = both
    d = daemon(forward_config(default, zone_up, mode="allowlist",
                              extra=f'allow = [ "{PRIVATE}" ];'))
    assert address(d.query(PRIVATE)) == ["10.1.0.20"]
    r = d.query(f"other.{ZONE}")
    assert r.rcode() == dns.rcode.NXDOMAIN and not r.answer
    assert zone_up.count(f"other.{ZONE}") == 0 and default.count(f"other.{ZONE}") == 0
    # A rule that denies a name inside the zone wins in filter mode as well.
    d2_conf = forward_config(default, zone_up, extra=f'deny = [ "*.{ZONE}" ];')
    d.reload(d2_conf)
    assert "configuration reloaded" in d.read_log()
    r = d.query(f"other.{ZONE}")
    assert r.rcode() == dns.rcode.NXDOMAIN
    assert zone_up.count(f"other.{ZONE}") == 0 and default.count(f"other.{ZONE}") == 0


def test_dead_zone_fails_its_names_only(both, daemon):
    default, zone_up = both
    zone_up.set_default(drop=True)
    zone_up.set(PRIVATE, drop=True)
    d = daemon(forward_config(default, zone_up))
    result = {}

    def ask_zone():
        result["zone"] = d.query(PRIVATE, timeout=8)

    t = threading.Thread(target=ask_zone)
    t.start()
    # While the zone's question waits on its dead server, other names answer.
    for i in range(5):
        assert address(d.query(PUBLIC)) == ["204.79.197.219"]
    t.join()
    # Bounded by the daemon's deadline (3 s), well inside the client's 8 s.
    assert result["zone"].rcode() == dns.rcode.SERVFAIL
    assert zone_up.count(PRIVATE) >= 1 and default.count(PRIVATE) == 0
    assert d.alive()


def test_reload_swaps_the_zone_list(both, daemon):
    default, zone_up = both
    default.set(f"a.{ZONE}", records=[f"a.{ZONE} A 192.0.2.50"])
    zone_up.set(f"a.{ZONE}", records=[f"a.{ZONE} A 10.1.0.50"])
    default.set(f"b.{ZONE}", records=[f"b.{ZONE} A 192.0.2.51"])
    zone_up.set(f"b.{ZONE}", records=[f"b.{ZONE} A 10.1.0.51"])
    zone_up.set("c.corp.example", records=["c.corp.example A 10.9.0.1"])
    d = daemon(forward_config(default, zone_up))
    assert address(d.query(f"a.{ZONE}")) == ["10.1.0.50"]
    # Without the zone, its names go to `upstreams`.
    d.reload(f'''
access = [ "127.0.0.0/8" ];
upstreams = [ "{default.addr}" ];
mode = "filter";
log = {{ level = "debug"; }};
''')
    assert d.read_log().count("configuration reloaded") == 1, d.read_log()
    assert "forward zone privatelink.azurecr.io removed" in d.read_log()
    assert address(d.query(f"b.{ZONE}")) == ["192.0.2.51"]
    assert zone_up.count(f"b.{ZONE}") == 0
    # A new zone swaps in.
    d.reload(forward_config(default, zone_up, zone="corp.example"))
    assert d.read_log().count("configuration reloaded") == 2, d.read_log()
    assert address(d.query("c.corp.example")) == ["10.9.0.1"]
    assert default.count("c.corp.example") == 0
    status = d.ctl("status", check=True).stdout
    assert "forward zone corp.example: 1 upstream servers" in status
    assert "privatelink" not in status
    assert d.status()["forward"] == {"corp.example": 1}


def test_explain_check_mode_and_metrics_name_the_zone(both, daemon, tmp_path):
    default, zone_up = both
    d = daemon(forward_config(default, zone_up))
    zone_server = zone_up.addr.replace(":", "#")
    default_server = default.addr.replace(":", "#")

    text = d.ctl("explain", PRIVATE, check=True).stdout
    assert f"upstreams: zone {ZONE}: {zone_server}\n" in text, text
    text = d.ctl("explain", NEAR, check=True).stdout
    assert f"upstreams: zone .: {default_server}\n" in text, text
    js = json.loads(d.ctl("--json", "explain", PRIVATE, check=True).stdout)
    assert js["zone"] == ZONE and js["upstreams"] == [zone_server]

    r = subprocess.run([ACRDNSD, "--explain", PRIVATE, "-c", str(d.conf)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"upstreams: zone {ZONE}: {zone_server}\n" in r.stdout, r.stdout
    r = subprocess.run([ACRDNSD, "-t", "-c", str(d.conf)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"forward: {ZONE} and below to {zone_server}\n" in r.stdout, r.stdout

    d.query(PRIVATE)
    d.query(PUBLIC)
    metrics = d.ctl("metrics", check=True).stdout
    assert f'acrdns_upstream_queries_total{{upstream="{zone_server}",zone="{ZONE}"}} 1\n' in metrics, metrics
    assert f'acrdns_upstream_queries_total{{upstream="{default_server}",zone="."}} 1\n' in metrics
    assert f'acrdns_upstream_rtt_seconds_count{{upstream="{zone_server}",zone="{ZONE}"}} 1\n' in metrics


def test_check_mode_fails_for_a_zone_with_only_our_listener(upstream, tmp_path):
    conf = tmp_path / "acrdnsd.conf"
    conf.write_text(f'''listen = [ "127.0.0.1:5399" ];
upstreams = [ "{upstream.addr}" ];
forward = (
  {{ zone = "{ZONE}";
    upstreams = [ "127.0.0.1:5399" ]; }}
);
''')
    r = subprocess.run([ACRDNSD, "-t", "-c", str(conf)], capture_output=True, text=True)
    assert r.returncode == 78 and r.stderr.startswith("<3>")
    assert f"acrdnsd.conf:5: no usable upstream server for forward zone {ZONE}" in r.stderr, r.stderr


def test_config_errors_name_the_line(upstream, tmp_path):
    conf = tmp_path / "acrdnsd.conf"
    conf.write_text(f'''upstreams = [ "{upstream.addr}" ];
forward = (
  {{ zone = "{ZONE}"; upstreams = [ "10.1.0.4" ]; }},
  {{ zone = "{ZONE.upper()}"; upstreams = [ "10.1.0.5" ]; }}
);
''')
    r = subprocess.run([ACRDNSD, "-t", "-c", str(conf)], capture_output=True, text=True)
    assert r.returncode != 0
    assert f"acrdnsd.conf:4: zone '{ZONE.upper()}' is already forwarded (line 3)" in r.stderr, r.stderr


def test_loop_through_a_zone_server_is_dropped(upstream, daemon, tmp_path):
    """A zone's server that forwards back to acrdnsd is found by the probes
    and dropped; the zone's names then SERVFAIL and the rest answer."""
    upstream.set(PUBLIC, records=[f"{PUBLIC} A 204.79.197.219"])
    stub = StubForwarder()
    try:
        d = daemon(f'''
access = [ "127.0.0.0/8" ];
upstreams = [ "{upstream.addr}" ];
forward = ( {{ zone = "{ZONE}"; upstreams = [ "{stub.addr}" ]; }} );
mode = "filter";
log = {{ level = "debug"; }};
''', start=False)
        stub.target = ("127.0.0.1", d.port)
        d.start()
        stub_name = f"127.0.0.1#{stub.port}"
        assert d.wait_log(f"upstream {stub_name} is a loop"), d.read_log()
        assert d.wait_log(f"no usable upstream server for zone {ZONE}"), d.read_log()
        assert d.status()["forward"] == {ZONE: 0}
        assert d.status()["ready"] is True          # readiness counts `upstreams` only
        forwarded = stub.forwarded
        assert d.query(PRIVATE).rcode() == dns.rcode.SERVFAIL
        assert stub.forwarded == forwarded
        assert address(d.query(PUBLIC)) == ["204.79.197.219"]
    finally:
        stub.close()


def test_truncated_zone_answer_is_retried_over_tcp_at_the_zone_server(both, daemon):
    default, zone_up = both
    zone_up.set(PRIVATE, records=[f"{PRIVATE} A 10.1.0.20"], tc=True)
    d = daemon(forward_config(default, zone_up))
    assert address(d.query(PRIVATE)) == ["10.1.0.20"]
    assert zone_up.count(PRIVATE, transport="tcp") == 1
    assert default.count(PRIVATE) == 0


def test_dead_zone_serves_stale(both, daemon):
    default, zone_up = both
    zone_up.set(PRIVATE, records=[f"{PRIVATE} A 10.1.0.20"], ttl=1)
    d = daemon(forward_config(default, zone_up))
    assert address(d.query(PRIVATE)) == ["10.1.0.20"]
    time.sleep(1.3)   # the TTL of 1 s must run out
    zone_up.set(PRIVATE, drop=True)
    r = d.query(PRIVATE, timeout=8)
    assert r.rcode() == dns.rcode.NOERROR and address(r) == ["10.1.0.20"]
    assert zone_up.count(PRIVATE) >= 2 and default.count(PRIVATE) == 0


def test_audited_zone_name_is_explained_with_its_servers(both, daemon):
    """Audit mode forwards what it would deny: explain says where to."""
    default, zone_up = both
    d = daemon(forward_config(default, zone_up, mode="allowlist", extra="audit = true;"))
    zone_server = zone_up.addr.replace(":", "#")
    text = d.ctl("explain", PRIVATE, check=True).stdout
    assert " audit\n" in text.splitlines()[0] + "\n", text
    assert f"upstreams: zone {ZONE}: {zone_server}\n" in text, text
    assert address(d.query(PRIVATE)) == ["10.1.0.20"]
    assert default.count(PRIVATE) == 0
