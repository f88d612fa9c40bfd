"""Start-up and the messages an operator reads: a bad configuration's exit
status and priority, the one line a start leaves in the log, reload errors
that name their cause, libconfig syntax errors that say what was expected,
the installed configurations, and errors that name the systemd setting to
change.  tests/system/ runs the same under a real systemd."""
import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import ACRDNSCTL, ACRDNSD, SRCDIR, Daemon

BUILDDIR = os.path.dirname(os.path.dirname(os.path.abspath(ACRDNSD)))
LOGIN = "contoso.azurecr.io"
EX_CONFIG = 78


def run(*args, **kw):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=30, **kw)


def ctl(sock, *args, **kw):
    return run(ACRDNSCTL, "-s", str(sock), *args, **kw)


@pytest.fixture
def open_dir():
    """A directory other users can read (pytest's are 0700 under root's)."""
    path = tempfile.mkdtemp(prefix="acrdns-")
    os.chmod(path, 0o755)
    yield pathlib.Path(path)
    shutil.rmtree(path, ignore_errors=True)


def require_root():
    if os.geteuid() != 0:
        pytest.skip("needs root")


# ---- item: a bad configuration ----

def test_bad_configuration_exits_78_at_err(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text('upstreams = [ "127.0.0.1:1" ];\nmode = "sideways";\n')
    for args in (["-f"], ["-t"], ["--explain", LOGIN], ["--print-nft"]):
        r = run(ACRDNSD, *args, "-c", str(conf))
        assert r.returncode == EX_CONFIG, (args, r.returncode, r.stderr)
        # journald reads "<3>" as priority err: `journalctl -p err` shows it.
        assert r.stderr.startswith(f"<3>{conf}:2: "), (args, r.stderr)
        assert "'mode' is 'sideways'" in r.stderr
    missing = run(ACRDNSD, "-t", "-c", str(tmp_path / "absent.conf"))
    assert missing.returncode == EX_CONFIG and missing.stderr.startswith("<3>")


def test_unit_does_not_retry_a_bad_configuration():
    text = open(os.path.join(BUILDDIR, "systemd", "acrdnsd.service")).read()
    assert "RestartPreventExitStatus=78" in text
    # systemd ignores RestartPreventExitStatus= for ExecStartPre= (its issue
    # 11868): a failing check there would be retried into the start limit.
    assert not re.search(r"^ExecStartPre=", text, re.M)


def test_start_leaves_one_summary_line(upstream, daemon):
    d = daemon(f'''
upstreams = [ "{upstream.addr}" ];
rules = [ "{os.path.abspath(SRCDIR)}/rules/azure-storage.rules" ];
registries = ( {{ login_server = "{LOGIN}";
                 data_endpoints = [ "contoso.eastus.data.azurecr.io" ]; }} );
''')
    started = [line for line in d.read_log().splitlines() if "started" in line]
    assert len(started) == 1
    assert re.search(r"acrdnsd \S+ started, serving: \d+ rules, 1 registries with 1 data "
                     r"endpoints, 1 upstream servers, mode allowlist$", started[0]), started
    # None of -t's policy listing.
    assert "endpoint:" not in d.read_log() and "rules: " not in d.read_log()


# ---- item: a reload that cannot bind ----

def test_reload_that_cannot_bind_names_the_address_and_the_error(upstream, daemon, tmp_path):
    d = daemon(f'upstreams = [ "{upstream.addr}" ];\nlisten = [ "127.0.0.1:@PORT@" ];\n')
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind(("127.0.0.1", 0))
    port = busy.getsockname()[1]
    try:
        d.write_config(f'upstreams = [ "{upstream.addr}" ];\n'
                       f'listen = [ "127.0.0.1:{d.port}", "127.0.0.1:{port}" ];\n')
        r = ctl(tmp_path / "control.sock", "reload")
    finally:
        busy.close()
    assert r.returncode == 1
    assert f"cannot listen on 127.0.0.1#{port}: Address already in use" in r.stderr, r.stderr
    assert d.alive() and d.query(LOGIN) is not None


# ---- item: syntax errors and the shipped examples ----

@pytest.mark.parametrize("text, line, expected", [
    ('rules = [\n  "a.rules",\n  "b.rules",\n];\n', 4,
     "a ',' after the last element of the list (line 3): remove it"),
    ('registries = ( { login_server = "a.azurecr.io"; },\n);\n', 2,
     "a ',' after the last element of the list (line 1)"),
    ('registries = ( { login_server = "a.azurecr.io"; }\n'
     '  { login_server = "b.azurecr.io"; } );\n', 2,
     "expected ',' between two elements of a list (after the one on line 1)"),
    ('access = [ "127.0.0.0/8" # a comment, with a comma\n  "::1/128", /* and, here */ ];\n', 2,
     "a ',' after the last element of the list (line 2)"),
])
def test_syntax_error_says_what_was_expected(tmp_path, text, line, expected):
    conf = tmp_path / "acrdnsd.conf"
    conf.write_text(text)
    r = run(ACRDNSD, "-t", "-c", str(conf))
    assert r.returncode == EX_CONFIG
    assert f"{conf}:{line}: syntax error: {expected}" in r.stderr, r.stderr


def test_example_stays_valid_with_its_optional_rules_uncommented(tmp_path):
    text = open(os.path.join(SRCDIR, "systemd", "acrdnsd.conf.example")).read()
    optional = re.findall(r'^\s*# ("\.\./rules/[^"]+",)', text, re.M)
    assert len(optional) >= 2, "the example's optional rule lines changed"
    text = re.sub(r'^(\s*)# ("\.\./rules/)', r"\1\2", text, flags=re.M)
    text = text.replace('"../rules/', f'"{os.path.abspath(SRCDIR)}/rules/')
    conf = tmp_path / "acrdnsd.conf"
    conf.write_text(text)
    r = run(ACRDNSD, "-t", "-c", str(conf))
    assert r.returncode == 0, r.stderr
    assert "mcr.rules" in r.stdout and "azure-auth.rules" in r.stdout


@pytest.mark.skipif(not shutil.which("make"), reason="make is not installed")
def test_installed_configurations_check_and_listen_on_53(tmp_path):
    dest = tmp_path / "root"
    # Not the outer make's jobserver: this make is a separate one.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    r = run("make", "-s", "-C", BUILDDIR, "install-data", f"DESTDIR={dest}", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    # acrdnsd's configurations; not resolved.conf.d/, systemd-resolved's.
    confs = list(dest.rglob("acrdnsd.conf")) + [c for c in dest.rglob("examples/*.conf*")
                                                 if c.is_file()]
    etc = [c for c in confs if c.parent.name == "acrdns"]
    assert len(etc) == 1 and len(confs) == 4, confs
    # The installed paths (sysconfdir) as they are in DESTDIR.
    rulesd = next(dest.rglob("rules.d"))
    sysconfdir = str(rulesd.parent.parent)[len(str(dest)):]
    assert 'listen = [ "127.0.0.1:53", "[::1]:53" ];' in etc[0].read_text()
    for c in confs:
        text = c.read_text().replace(f'"{sysconfdir}/acrdns/rules.d/', f'"{rulesd}/')
        c.write_text(text)
        r = run(ACRDNSD, "-t", "-c", str(c))
        assert r.returncode == 0, (c, r.stderr)
        assert "rules: 0 in all" not in r.stdout


# ---- item: messages that name what to change ----

def test_acrdnsctl_without_access_names_root_or_the_group(upstream, daemon, open_dir):
    require_root()
    d = daemon(f'upstreams = [ "{upstream.addr}" ];\ncontrol_socket = "{open_dir}/control.sock";\n')
    assert d.wait_log("started")
    r = run("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
            ACRDNSCTL, "-s", f"{open_dir}/control.sock", "status")
    if "setpriv" in r.stderr and r.returncode != 3:
        pytest.skip(f"setpriv cannot run: {r.stderr}")
    assert r.returncode == 3
    assert "Permission denied" in r.stderr and "as root" in r.stderr and "acrdns" in r.stderr


def test_read_only_paths_name_read_write_paths(upstream, open_dir):
    require_root()
    ro = open_dir / "ro"
    ro.mkdir()
    d = Daemon(open_dir, f'upstreams = [ "{upstream.addr}" ];\n'
                         f'control_socket = "{ro}/control.sock";\n'
                         f'state_dir = "{open_dir}/state";\n')
    # A read-only bind mount in a mount namespace of its own, as
    # ProtectSystem=strict makes one.
    d.prefix = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                f'mount --bind -o ro "{ro}" "{ro}" && exec "$0" "$@"']
    try:
        d.start()
    except RuntimeError as e:
        if "unshare" in str(e) or "mount" in str(e):
            pytest.skip(f"no mount namespace here: {e}")
        raise
    try:
        assert d.wait_log("Read-only file system")
        log = d.read_log()
        assert f"ReadWritePaths={ro}" in log and "systemctl edit acrdnsd" in log, log
    finally:
        d.stop()


def test_nftables_without_the_capability_names_it(upstream, open_dir):
    require_root()
    if not shutil.which("setpriv"):
        pytest.skip("setpriv is not installed")
    run_dir = open_dir / "run"
    run_dir.mkdir()
    os.chown(run_dir, 65534, 65534)
    d = Daemon(open_dir, f'upstreams = [ "{upstream.addr}" ];\n'
                         f'control_socket = "{run_dir}/control.sock";\n'
                         f'state_dir = "{run_dir}/state";\nuser = "nobody";\n'
                         'nftables = { table = "inet acrdns"; set4 = "allow4"; set6 = "allow6"; };\n')
    os.chmod(d.conf, 0o644)
    os.chmod(open_dir, 0o777)
    d.prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                "--inh-caps=-all", "--bounding-set=-all"]
    d.start()
    try:
        if d.wait_log("built without", timeout=1):
            pytest.skip("acrdnsd was built without libnftables")
        assert d.wait_log("lacks CAP_NET_ADMIN")
        log = d.read_log()
        assert "systemctl edit acrdnsd" in log and "create it with the ruleset" not in log, log
    finally:
        d.stop()


def test_endpoints_after_a_restart_say_when_the_set_was_saved(upstream, daemon, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    saved = state / f"{LOGIN}.json"
    saved.write_text(json.dumps({"loginServer": LOGIN, "savedAt": 1700000000, "dataEndpoints": [
        {"endpoint": "contoso.westeurope.data.azurecr.io"}]}))
    os.utime(saved, (1700000000, 1700000000))
    daemon(f'''
upstreams = [ "{upstream.addr}" ];
state_dir = "{state}";
registries = ( {{ login_server = "{LOGIN}";
                 discovery = {{ source = "file"; path = "{tmp_path}/absent.json"; }}; }} );
''')
    r = ctl(tmp_path / "control.sock", "endpoints")
    assert r.returncode == 0, r.stderr
    assert ("last success: none since start; endpoints loaded from the set saved at "
            "2023-11-14T22:13:20Z") in r.stdout, r.stdout
    assert "endpoint: contoso.westeurope.data.azurecr.io" in r.stdout
    j = json.loads(ctl(tmp_path / "control.sock", "--json", "endpoints").stdout)
    assert j[0]["saved_set_loaded"] == "2023-11-14T22:13:20Z" and j[0]["last_success"] is None


def test_socket_unit_says_to_stop_the_service_first():
    text = open(os.path.join(SRCDIR, "systemd", "acrdnsd.socket")).read()
    assert "systemctl stop acrdnsd.service && systemctl enable --now acrdnsd.socket" in text
