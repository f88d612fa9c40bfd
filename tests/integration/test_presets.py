"""Shipped presets and other registries: an Amazon ECR registry allows its
API and exactly its region's layer bucket (over the shipped S3 denies) and
no other S3 name; the AKS node and MCR sets; shared registries (Docker Hub,
GHCR, Quay) that warn in -t and at start-up."""
import os
import subprocess

import dns.rcode
import pytest

from conftest import ACRDNSD, SRCDIR

RULES = os.path.join(os.path.abspath(SRCDIR), "rules")
ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
BUCKET = "prod-us-east-1-starport-layer-bucket.s3.us-east-1.amazonaws.com"


def config(up, registries, rules=("object-storage.rules", "azure-storage.rules"), extra=""):
    files = ", ".join(f'"{RULES}/{r}"' for r in rules)
    return f'''
access = [ "127.0.0.0/8" ];
upstreams = [ "{up.addr}" ];
rules = [ {files} ];
registries = ( {registries} );
log = {{ level = "info"; queries = "denied"; }};
{extra}
'''


def check(tmp_path, text):
    conf = tmp_path / "t.conf"
    conf.write_text(text)
    return subprocess.run([ACRDNSD, "-t", "-c", str(conf)], capture_output=True, text=True)


def explain(conf, name):
    out = subprocess.run([ACRDNSD, "-c", str(conf), "--explain", name], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()[1]


@pytest.mark.parametrize("mode", ["allowlist", "filter"])
def test_ecr_registry_allows_its_bucket_and_no_other_s3_name(upstream, daemon, mode):
    for i, name in enumerate([ECR, f"api.ecr.us-east-1.amazonaws.com", BUCKET]):
        upstream.set(name, records=[f"{name} A 52.216.0.{i + 1}"])
    d = daemon(config(upstream, f'{{ login_server = "{ECR}"; }}',
                      rules=("object-storage.rules", "azure-storage.rules", "registries.rules"),
                      extra=f'mode = "{mode}";'))
    for name in (ECR, "api.ecr.us-east-1.amazonaws.com", BUCKET):
        assert d.query(name).rcode() == dns.rcode.NOERROR, name
    denied = [
        "attacker.s3.us-east-1.amazonaws.com",                        # any other bucket
        "x." + BUCKET,                                                # below the bucket host
        "prod-us-west-2-starport-layer-bucket.s3.us-west-2.amazonaws.com",   # another region's
        "prod-us-east-1-starport-layer-bucket.s3.amazonaws.com",      # the global endpoint
        "s3.us-east-1.amazonaws.com",
        "999999999999.dkr.ecr.us-east-1.amazonaws.com",               # another account
        "999999999999.dkr-ecr.us-east-1.on.aws",
    ] + (["api.ecr.us-west-2.amazonaws.com"] if mode == "allowlist" else [])
    for name in denied:
        assert d.query(name).rcode() == dns.rcode.NXDOMAIN, name
    assert not set(upstream.names()) & {n.lower() + "." for n in denied}
    # Retransmissions on a busy machine may repeat a name; what counts is which names went out.
    assert set(upstream.names()) == {n.lower() + "." for n in (ECR, "api.ecr.us-east-1.amazonaws.com", BUCKET)}


def test_ecr_dual_stack_login_server(upstream, daemon, tmp_path):
    login = "123456789012.dkr-ecr.eu-west-1.on.aws"
    d = daemon(config(upstream, f'{{ login_server = "{login}"; }}'), start=False)
    assert explain(d.conf, login) == "allow"
    assert explain(d.conf, "prod-eu-west-1-starport-layer-bucket.s3.eu-west-1.amazonaws.com") == "allow"
    assert explain(d.conf, "api.ecr.eu-west-1.amazonaws.com") == "allow"
    assert explain(d.conf, "loot.s3.eu-west-1.amazonaws.com") == "deny"
    out = check(tmp_path, d.conf.read_text())
    assert out.returncode == 0 and "Amazon ECR in eu-west-1" in out.stdout, out.stdout


@pytest.mark.parametrize("login", [
    "12345678901.dkr.ecr.us-east-1.amazonaws.com",       # 11 digits
    "1234567890123.dkr.ecr.us-east-1.amazonaws.com",     # 13 digits
    "123456789012.dkr.ecr.useast1.amazonaws.com",        # not a region
    "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.example",
    "x.123456789012.dkr.ecr.us-east-1.amazonaws.com",
    "123456789012.dkr-ecr.us-east-1.amazonaws.com",
])
def test_ecr_forms_are_checked(tmp_path, login):
    out = check(tmp_path, f'upstreams = [ "127.0.0.1" ];\nregistries = ( {{ login_server = "{login}"; }} );\n')
    assert out.returncode != 0
    assert ":2: login server" in out.stderr and "dkr.ecr.<region>.amazonaws.com" in out.stderr, out.stderr


def test_ecr_takes_no_data_endpoints_nor_discovery(tmp_path):
    out = check(tmp_path, f'upstreams = [ "127.0.0.1" ];\nregistries = ( {{ login_server = "{ECR}";\n'
                          f'  data_endpoints = [ "{BUCKET}" ]; }} );\n')
    assert out.returncode != 0 and ":3: registry" in out.stderr
    assert "remove 'data_endpoints'" in out.stderr, out.stderr
    out = check(tmp_path, f'upstreams = [ "127.0.0.1" ];\nregistries = ( {{ login_server = "{ECR}";\n'
                          f'  discovery = {{ source = "file"; path = "/x.json"; }}; }} );\n')
    assert out.returncode != 0 and "remove 'discovery'" in out.stderr, out.stderr


def test_aks_node_and_mcr_presets(upstream, daemon):
    d = daemon(config(upstream, "", rules=("azure-storage.rules", "aks-node.rules")), start=False)
    for name in ("mcr.microsoft.com", "x.data.mcr.microsoft.com", "mcr-0001.mcr-msedge.net",
                 "management.azure.com", "login.microsoftonline.com", "packages.microsoft.com",
                 "acs-mirror.azureedge.net", "packages.aks.azure.com",
                 "mycluster-dns-1a2b3c4d.hcp.eastus.azmk8s.io",
                 "c-0123.hcp.westeurope.azmk8s.io"):
        assert explain(d.conf, name) == "allow", name
    for name in ("hcp.eastus.azmk8s.io", "x.portal.hcp.eastus.azmk8s.io.evil.example",
                 "x.azmk8s.io", "security.ubuntu.com",
                 "md-abc.blob.storage.azure.net", "umsa123.blob.core.windows.net"):
        assert explain(d.conf, name) == "deny", name
    d.write_config(config(upstream, "", rules=("mcr.rules",)))
    assert explain(d.conf, "mcr-0001.mcr-msedge.net") == "allow"


@pytest.mark.parametrize("rules,registry", [
    ("dockerhub.rules", "Docker Hub"),
    ("ghcr.rules", "GitHub Container Registry"),
    ("quay.rules", "Quay.io"),
])
def test_shared_registry_files_warn(upstream, daemon, tmp_path, rules, registry):
    text = config(upstream, "", rules=(rules,))
    out = check(tmp_path, text)
    assert out.returncode == 0
    warning = [l for l in out.stdout.splitlines() if l.startswith("warning: ")]
    assert len(warning) == 1, out.stdout
    assert f"{rules} allows {registry}" in warning[0]
    assert "pushes to any account" in warning[0] and "cache" in warning[0]
    d = daemon(text)
    line = [l for l in d.read_log().splitlines() if f"{rules} allows {registry}" in l]
    assert line and line[0].startswith("<4>"), d.read_log()
    # Files that do not say so do not warn.
    out = check(tmp_path, config(upstream, "", rules=("mcr.rules", "aks-node.rules")))
    assert "warning:" not in out.stdout


def test_unknown_rule_directive_is_an_error(tmp_path):
    rules = tmp_path / "x.rules"
    rules.write_text("# a comment\n# acrdns: shared-registy Typo Hub\nallow a.example\n")
    out = check(tmp_path, f'upstreams = [ "127.0.0.1" ];\nrules = [ "{rules}" ];\n')
    assert out.returncode != 0
    assert f"{rules}:2: unknown directive '# acrdns: shared-registy Typo Hub'" in out.stderr, out.stderr
