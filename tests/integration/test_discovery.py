"""Endpoint discovery as an operator sees it: a file that changes, a command
that prints, hangs or fails, a tampered document, and a restart with the
source gone."""
import json
import os
import subprocess
import time

import dns.rcode
import pytest

from conftest import ACRDNSD, LOGIN, wait_for



def doc(*endpoints, login=LOGIN):
    return json.dumps({"loginServer": login,
                       "dataEndpoints": [{"region": e.split(".")[1], "endpoint": e} for e in endpoints]})


def script_upstream(up, *names):
    for i, name in enumerate(names):
        up.set(name, records=[f"{name} A 20.60.0.{i + 1}"])


def discovery_config(up, tmp_path, source):
    return f'''
upstreams = [ "{up.addr}" ];
state_dir = "{tmp_path}/state";
deny = [ "*.azurecr.io" ];
registries = ( {{ login_server = "{LOGIN}"; discovery = {source}; }} );
log = {{ level = "debug"; queries = "denied"; }};
'''


def allowed(d, name):
    return d.query(name).rcode() == dns.rcode.NOERROR


def saved_endpoints(tmp_path):
    try:
        saved = json.loads((tmp_path / "state" / f"{LOGIN}.json").read_text())
    except (OSError, ValueError):
        return None
    return sorted(e["endpoint"] for e in saved["dataEndpoints"])


EAST, WEST, NORTH = (f"contoso.{r}.data.azurecr.io" for r in ("eastus", "westus", "northeurope"))


def test_file_change_followed_within_a_second(upstream, daemon, tmp_path):
    script_upstream(upstream, EAST, WEST, NORTH)
    src = tmp_path / "contoso.json"
    src.write_text(doc(EAST, WEST))
    d = daemon(discovery_config(upstream, tmp_path, f'{{ source = "file"; path = "{src}"; interval = 300; }}'))
    assert wait_for(lambda: allowed(d, EAST))
    assert allowed(d, WEST)
    assert d.query(NORTH).rcode() == dns.rcode.NXDOMAIN
    # A replica is added and one removed: no restart, no reload.
    upstream.clear()
    start = time.monotonic()
    src.write_text(doc(EAST, NORTH))
    # The new endpoint is resolved before any client asks (prefetch)...
    assert wait_for(lambda: upstream.count(NORTH) >= 1, timeout=1.5)
    # ...and answered within a second of the change.
    assert wait_for(lambda: allowed(d, NORTH), timeout=1.5)
    assert time.monotonic() - start < 1.5
    assert d.query(WEST).rcode() == dns.rcode.NXDOMAIN
    log = d.read_log()
    assert f"discovery {LOGIN}: endpoint added: {NORTH}" in log
    assert f"discovery {LOGIN}: endpoint removed: {WEST}" in log
    # Saved for the next start (by a thread: answers do not wait for the disk).
    assert wait_for(lambda: saved_endpoints(tmp_path) == [EAST, NORTH])


def test_file_replaced_by_rename_is_followed(upstream, daemon, tmp_path):
    script_upstream(upstream, EAST, NORTH)
    src = tmp_path / "contoso.json"
    src.write_text(doc(EAST))
    d = daemon(discovery_config(upstream, tmp_path, f'{{ source = "file"; path = "{src}"; }}'))
    assert wait_for(lambda: allowed(d, EAST))
    tmp = tmp_path / "contoso.json.new"
    tmp.write_text(doc(EAST, NORTH))
    os.rename(tmp, src)
    assert wait_for(lambda: allowed(d, NORTH), timeout=2)


@pytest.mark.parametrize("bad,says", [
    (doc(EAST, "attacker.blob.core.windows.net"), "no dedicated data endpoints"),
    (doc(EAST, "evil.eastus.data.azurecr.io"), "rejected whole: endpoint 'evil.eastus.data.azurecr.io'"),
    (doc(EAST, "contoso.eastus.data.azurecr.io.attacker.example"), "rejected whole"),
    (doc(EAST, login="evil.azurecr.io"), "document is for 'evil.azurecr.io'"),
    ("{ not json", "not JSON"),
])
def test_tampered_document_keeps_last_good_set(upstream, daemon, tmp_path, bad, says):
    script_upstream(upstream, EAST, WEST)
    src = tmp_path / "contoso.json"
    src.write_text(doc(EAST, WEST))
    d = daemon(discovery_config(upstream, tmp_path, f'{{ source = "file"; path = "{src}"; }}'))
    assert wait_for(lambda: allowed(d, EAST))
    src.write_text(bad)
    assert d.wait_log(says, timeout=3), d.read_log()[-2000:]
    assert "keeping the last good endpoints" in d.read_log()
    assert allowed(d, EAST) and allowed(d, WEST)
    for name in ("attacker.blob.core.windows.net", "evil.eastus.data.azurecr.io"):
        assert d.query(name).rcode() == dns.rcode.NXDOMAIN
    assert upstream.count("attacker.blob.core.windows.net") == 0


def test_command_source(upstream, daemon, tmp_path):
    script_upstream(upstream, EAST)
    script = tmp_path / "show-endpoints"
    script.write_text(f"#!/bin/sh\necho 'warming up' >&2\ncat <<'EOF'\n{doc(EAST)}\nEOF\n")
    script.chmod(0o755)
    d = daemon(discovery_config(upstream, tmp_path,
                                f'{{ source = "command"; command = [ "{script}", "--name", "contoso" ]; }}'))
    assert wait_for(lambda: allowed(d, EAST))
    assert d.wait_log(f"discovery {LOGIN}: {script}: warming up")


def test_command_that_hangs_is_killed_and_dns_keeps_answering(upstream, daemon, tmp_path):
    upstream.set("www.example.com", records=["www.example.com A 192.0.2.1"])
    script = tmp_path / "hang"
    script.write_text("#!/bin/sh\nsleep 30\n")
    script.chmod(0o755)
    d = daemon(discovery_config(upstream, tmp_path,
                                f'{{ source = "command"; command = [ "{script}" ]; timeout = 1; }}')
               + 'mode = "filter";')
    start = time.monotonic()
    # DNS answers while the command runs.
    assert d.query("www.example.com").answer
    assert time.monotonic() - start < 0.9      # not after the 1 s kill
    assert d.wait_log(f"command {script} killed after 1 s", timeout=4)
    assert running(str(script)) == []


def running(text):
    """The PIDs whose command line holds text (pgrep -f without procps)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    pids.append(int(pid))
        except OSError:
            pass
    return pids


def test_command_that_fails(upstream, daemon, tmp_path):
    script_upstream(upstream, EAST)
    state = tmp_path / "state"
    state.mkdir()
    (state / f"{LOGIN}.json").write_text(doc(EAST))
    script = tmp_path / "fail"
    script.write_text("#!/bin/sh\necho 'ERROR: (AuthorizationFailed)' >&2\nexit 1\n")
    script.chmod(0o755)
    d = daemon(discovery_config(upstream, tmp_path,
                                f'{{ source = "command"; command = [ "{script}" ]; }}'))
    assert d.wait_log(f"command {script} exited with status 1")
    assert d.wait_log("AuthorizationFailed")
    assert allowed(d, EAST)  # the saved set stays


def test_restart_with_source_down_uses_saved_set(upstream, daemon, tmp_path):
    script_upstream(upstream, EAST, NORTH)
    src = tmp_path / "contoso.json"
    src.write_text(doc(EAST, NORTH))
    cfg = discovery_config(upstream, tmp_path, f'{{ source = "file"; path = "{src}"; }}')
    d = daemon(cfg)
    assert wait_for(lambda: allowed(d, NORTH))
    d.stop()
    src.unlink()
    d2 = daemon(cfg)
    assert allowed(d2, NORTH) and allowed(d2, EAST)
    assert d2.wait_log("cannot read")
    assert "loaded saved endpoints" in d2.read_log()
    # The check mode shows them too.
    out = subprocess.run([ACRDNSD, "-t", "-c", str(d2.conf)], capture_output=True, text=True)
    assert f"endpoint: {NORTH}" in out.stdout


def test_burst_of_changes_saves_the_last_set_before_exit(upstream, daemon, tmp_path):
    """The state is written off the loop; a change made just before the
    daemon stops is still saved, and the last of a burst wins."""
    script_upstream(upstream, EAST, WEST, NORTH)
    src = tmp_path / "contoso.json"
    src.write_text(doc(EAST))
    cfg = discovery_config(upstream, tmp_path, f'{{ source = "file"; path = "{src}"; }}')
    d = daemon(cfg)
    assert wait_for(lambda: allowed(d, EAST))
    for endpoints, new in (((EAST, WEST), WEST), ((WEST, NORTH), NORTH), ((NORTH,), None)):
        marks = d.read_log().count(f"discovery {LOGIN}: endpoint")
        tmp = tmp_path / "contoso.json.new"
        tmp.write_text(doc(*endpoints))
        tmp.rename(src)
        assert wait_for(lambda: d.read_log().count(f"discovery {LOGIN}: endpoint") > marks)
        if new:
            assert wait_for(lambda: allowed(d, new))
    assert wait_for(lambda: d.query(WEST).rcode() == dns.rcode.NXDOMAIN)
    d.stop()   # at once: a save still waiting is written at exit
    assert saved_endpoints(tmp_path) == [NORTH]
    assert "not saved" not in d.read_log()
    src.unlink()
    d2 = daemon(cfg)
    assert allowed(d2, NORTH)
    assert d2.query(EAST).rcode() == dns.rcode.NXDOMAIN
    assert "loaded saved endpoints" in d2.read_log()


def test_state_that_cannot_be_saved_is_logged(upstream, daemon, tmp_path):
    script_upstream(upstream, EAST, NORTH)
    src = tmp_path / "contoso.json"
    src.write_text(doc(EAST))
    (tmp_path / "state").write_text("a file where the directory should be\n")
    d = daemon(discovery_config(upstream, tmp_path, f'{{ source = "file"; path = "{src}"; }}'))
    assert wait_for(lambda: allowed(d, EAST))
    assert d.wait_log(f"discovery {LOGIN}: not saved: ")
    # The change itself is made all the same.
    tmp = tmp_path / "contoso.json.new"
    tmp.write_text(doc(EAST, NORTH))
    tmp.rename(src)
    assert wait_for(lambda: allowed(d, NORTH))


def test_config_checks_arm_settings(tmp_path):
    conf = tmp_path / "a.conf"
    conf.write_text(f'upstreams = [ "192.0.2.1" ];\nregistries = ( {{ login_server = "{LOGIN}";\n'
                    f'  discovery = {{ source = "arm"; resource_id = "subscriptions/x"; }}; }} );\n')
    out = subprocess.run([ACRDNSD, "-t", "-c", str(conf)], capture_output=True, text=True)
    assert out.returncode != 0 and "'resource_id' must be an ARM resource path" in out.stderr
    conf.write_text(f'upstreams = [ "192.0.2.1" ];\nregistries = ( {{ login_server = "{LOGIN}";\n'
                    f'  discovery = {{ source = "arm"; }}; }} );\n')
    out = subprocess.run([ACRDNSD, "-t", "-c", str(conf)], capture_output=True, text=True)
    assert out.returncode != 0 and "needs 'resource_id'" in out.stderr


@pytest.fixture
def arm():
    from armfake import ArmFake
    fake = ArmFake()
    yield fake
    fake.close()


def arm_source(arm, extra=""):
    from armfake import RESOURCE
    return (f'{{ source = "arm"; resource_id = "{RESOURCE}"; arm_endpoint = "{arm.url}"; '
            f'imds_endpoint = "{arm.url}/"; interval = 5; timeout = 5; {extra} }}')


def test_arm_source_with_throttling_and_errors(upstream, daemon, tmp_path, arm):
    script_upstream(upstream, EAST, WEST)
    arm.statuses = [429, 500]
    d = daemon(discovery_config(upstream, tmp_path, arm_source(arm, 'client_id = "1234-abcd";')))
    assert d.wait_log("HTTP 429", timeout=3)
    assert wait_for(lambda: allowed(d, EAST), timeout=12), d.read_log()[-2000:]
    assert "HTTP 500" in d.read_log()
    url, headers = arm.token_requests[0]
    assert headers["Metadata"] == "true"
    assert "client_id=1234-abcd" in url.query
    assert f"resource=http%3A%2F%2F127.0.0.1%3A{arm.port}%2F" in url.query
    # One token served every request: it is cached until shortly before expires_on.
    assert arm.tokens == 1 and len(arm.resource_requests) == 3
    # A replica added in Azure shows up at the next refresh.
    arm.endpoints.append(WEST)
    assert wait_for(lambda: allowed(d, WEST), timeout=8)


def test_arm_newest_preview_adds_regional_endpoints(upstream, daemon, tmp_path, arm):
    geo = "contoso.eastus.geo.azurecr.io"
    script_upstream(upstream, EAST, geo)
    arm.regional = [geo]
    d = daemon(discovery_config(upstream, tmp_path, arm_source(arm)))
    assert wait_for(lambda: allowed(d, geo), timeout=3), d.read_log()[-2000:]
    assert allowed(d, EAST)
    versions = [u.query for u, _ in arm.resource_requests]
    assert versions == ["api-version=2026-09-01-preview"]
    assert "refused" not in d.read_log()


@pytest.mark.parametrize("version", ["2026-09-01-preview", "2026-01-01-preview"])
def test_arm_reads_host_names_whatever_the_flag(upstream, daemon, tmp_path, arm, version):
    # The flag beside the list was renamed between previews: only the list counts.
    geo = "contoso.westeurope.geo.azurecr.io"
    script_upstream(upstream, EAST, geo)
    arm.regional, arm.regional_flag = [geo], False
    d = daemon(discovery_config(upstream, tmp_path, arm_source(arm, f'api_version = "{version}";')))
    assert wait_for(lambda: allowed(d, geo), timeout=3), d.read_log()[-2000:]


def test_arm_falls_back_to_stable_with_mixed_case_login(upstream, daemon, tmp_path, arm):
    # A cloud without the preview: 2025-11-01 answers, with "Contoso.azurecr.io".
    script_upstream(upstream, EAST)
    arm.versions = {"2025-11-01", "2023-07-01"}
    d = daemon(discovery_config(upstream, tmp_path, arm_source(arm)))
    assert wait_for(lambda: allowed(d, EAST), timeout=3), d.read_log()[-2000:]
    assert d.wait_log("ARM refused api-version 2026-09-01-preview (HTTP 400")
    assert "using 2025-11-01" in d.read_log()
    assert "document is for" not in d.read_log()


def test_arm_falls_back_step_by_step_and_warns_once(upstream, daemon, tmp_path, arm):
    script_upstream(upstream, EAST)
    arm.versions = {"2023-07-01"}
    d = daemon(discovery_config(upstream, tmp_path, arm_source(arm)))
    assert wait_for(lambda: allowed(d, EAST), timeout=3), d.read_log()[-2000:]
    # Each version once, then the oldest from then on (a refresh every 5 s).
    assert wait_for(lambda: len(arm.resource_requests) >= 4, timeout=15)
    versions = [u.query for u, _ in arm.resource_requests]
    assert versions[:3] == ["api-version=2026-09-01-preview", "api-version=2025-11-01",
                            "api-version=2023-07-01"]
    assert set(versions[3:]) == {"api-version=2023-07-01"}
    log = d.read_log()
    assert log.count("ARM refused api-version 2026-09-01-preview") == 1
    assert log.count("ARM refused api-version 2025-11-01") == 1
    warn = [l for l in log.splitlines() if "ARM refused api-version 2025-11-01" in l][0]
    assert warn.startswith("<4>") and "using 2023-07-01" in warn


def test_arm_pinned_api_version(upstream, daemon, tmp_path, arm):
    # The first preview's shape: regionalEndpointEnabled, then the host names.
    geo = "contoso.westus.geo.azurecr.io"
    script_upstream(upstream, EAST, geo)
    arm.regional = [geo]
    d = daemon(discovery_config(upstream, tmp_path,
                                arm_source(arm, 'api_version = "2026-01-01-preview";')))
    assert wait_for(lambda: allowed(d, geo), timeout=3), d.read_log()[-2000:]
    assert {u.query for u, _ in arm.resource_requests} == {"api-version=2026-01-01-preview"}


def test_arm_pinned_api_version_is_never_replaced(upstream, daemon, tmp_path, arm):
    script_upstream(upstream, EAST)
    arm.versions = {"2025-11-01"}
    d = daemon(discovery_config(upstream, tmp_path, arm_source(arm, 'api_version = "2023-07-01";')))
    assert d.wait_log("HTTP 400", timeout=3)
    assert wait_for(lambda: len(arm.resource_requests) >= 2, timeout=8)
    assert {u.query for u, _ in arm.resource_requests} == {"api-version=2023-07-01"}
    assert d.query(EAST).rcode() == dns.rcode.NXDOMAIN


@pytest.mark.parametrize("value,error", [
    ('"2025-11"', "expected an ARM api-version"),
    ('"latest"', "expected an ARM api-version"),
    ('"2025-11-01-"', "expected an ARM api-version"),
])
def test_config_checks_api_version(tmp_path, value, error):
    conf = tmp_path / "a.conf"
    conf.write_text(f'upstreams = [ "127.0.0.1" ];\nregistries = ( {{ login_server = "{LOGIN}";\n'
                    f'  discovery = {{ source = "arm"; resource_id = "/subscriptions/x"; '
                    f'api_version = {value}; }}; }} );\n')
    out = subprocess.run([ACRDNSD, "-t", "-c", str(conf)], capture_output=True, text=True)
    assert out.returncode != 0 and error in out.stderr and ":3:" in out.stderr, out.stderr


def test_arm_token_expiring_is_renewed(upstream, daemon, tmp_path, arm):
    script_upstream(upstream, EAST)
    arm.token_lifetime = 60   # inside the renewal margin: every refresh asks again
    d = daemon(discovery_config(upstream, tmp_path, arm_source(arm)))
    assert wait_for(lambda: allowed(d, EAST), timeout=3)
    assert wait_for(lambda: len(arm.resource_requests) >= 2, timeout=8)
    assert arm.tokens >= 2


def test_arm_401_fetches_a_fresh_token_once(upstream, daemon, tmp_path, arm):
    script_upstream(upstream, EAST)
    arm.statuses = [401]
    d = daemon(discovery_config(upstream, tmp_path, arm_source(arm)))
    assert wait_for(lambda: allowed(d, EAST), timeout=3)
    assert arm.tokens == 2


def test_imds_is_never_asked_through_a_proxy(upstream, daemon, tmp_path, arm):
    script_upstream(upstream, EAST)
    d = daemon(discovery_config(upstream, tmp_path, arm_source(arm)), start=False)
    d.env = {"http_proxy": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
             "https_proxy": "http://127.0.0.1:9", "no_proxy": "", "NO_PROXY": ""}
    d.start()
    assert wait_for(lambda: arm.tokens >= 1, timeout=3)
    # ARM itself does follow the proxy setting; here the proxy is dead.
    assert d.wait_log("ARM /subscriptions", timeout=5)


def test_arm_tampered_resource_rejected(upstream, daemon, tmp_path, arm):
    arm.endpoints = ["contoso.eastus.data.azurecr.io", "attacker.eastus.data.azurecr.io"]
    d = daemon(discovery_config(upstream, tmp_path, arm_source(arm)))
    assert d.wait_log("rejected whole: endpoint 'attacker.eastus.data.azurecr.io'", timeout=3)
    assert d.query(EAST).rcode() == dns.rcode.NXDOMAIN
