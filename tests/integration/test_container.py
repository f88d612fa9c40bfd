"""acrdnsd as the resolver of a container: a network namespace behind a
veth pair plays the container, its /etc/resolv.conf (through
/etc/netns/NAME/resolv.conf) names acrdnsd on the host side, and glibc's
resolver inside it gets the registry and nothing for a storage account."""
import os

import pytest

from netns import Netns, netns_or_skip, sh, veth
from conftest import LOGIN

EAST = "contoso.eastus.data.azurecr.io"


@pytest.fixture
def container():
    netns_or_skip()
    tag = f"acrc{os.getpid() % 100000}"
    ns = Netns(tag)
    host_if = None
    try:
        host_if, _ = veth(None, "10.213.0.1/24", ns, "10.213.0.2/24", tag)
        ns.run("ip", "route", "add", "default", "via", "10.213.0.1")
        os.makedirs(f"/etc/netns/{tag}", exist_ok=True)
        with open(f"/etc/netns/{tag}/resolv.conf", "w") as f:
            f.write("nameserver 10.213.0.1\noptions timeout:2 attempts:2\n")
        yield ns
    finally:
        ns.delete()
        if host_if:
            sh("ip", "link", "del", host_if, check=False)


def test_glibc_in_container_resolves_registry_not_storage(container, upstream, daemon):
    upstream.set(LOGIN, records=[f"{LOGIN} A 20.62.0.1", f"{LOGIN} AAAA 2001:db8::1"])
    upstream.set(EAST, records=[f"{EAST} A 20.60.0.1"])
    upstream.set("evil.blob.core.windows.net", records=["evil.blob.core.windows.net A 20.150.0.9"])
    # What README.md's "Containers" recipe says: listen on the bridge
    # address, allow the bridge network, point the container at it.
    d = daemon(f'''
listen = [ "10.213.0.1:53" ];
access = [ "10.213.0.0/24" ];
upstreams = [ "{upstream.addr}" ];
rules = [ "@SRCDIR@/rules/azure-storage.rules", "@SRCDIR@/rules/registries.rules" ];
registries = ( {{ login_server = "{LOGIN}"; data_endpoints = [ "{EAST}" ]; }} );
''')
    assert d.alive()

    r = container.run("getent", "ahosts", LOGIN, check=False)
    assert r.returncode == 0, r.stderr
    assert "20.62.0.1" in r.stdout and "2001:db8::1" in r.stdout

    r = container.run("getent", "ahosts", EAST, check=False)
    assert r.returncode == 0 and "20.60.0.1" in r.stdout

    # A storage account gets no answer, and its name never left the host.
    r = container.run("getent", "ahosts", "evil.blob.core.windows.net", check=False)
    assert r.returncode == 2, r.stdout
    assert not [n for n in upstream.names() if "blob.core.windows.net" in n]
    assert upstream.count(LOGIN) >= 1

    # Another registry: the same.
    r = container.run("getent", "ahosts", "evilcorp.azurecr.io", check=False)
    assert r.returncode == 2
