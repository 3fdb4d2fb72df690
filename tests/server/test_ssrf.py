"""SSRF policy: private, loopback, link-local and metadata targets in every spelling are refused."""

from __future__ import annotations

import httpx
import pytest

from legato.errors import URLNotAllowed
from legato.server import SSRFPolicy, SSRFSettings
from legato.server._ssrf import parse_host_ip
from legato.testing import FakeProvider, Fault


def resolver(table: dict[str, list[str]]):  # a resolver answering from a table (DNS of the test world)
    async def resolve(host: str) -> list[str]:
        if host not in table:
            raise OSError(-2, "Name or service not known")
        return table[host]

    return resolve


DNS = {
    "public.example": ["93.184.216.34"],
    "rebind.example": ["93.184.216.34", "10.0.0.7"],
    "v6.example": ["2606:2800:220:1:248:1893:25c8:1946"],
    "inner.example": ["192.168.1.20"],
}

BLOCKED = [
    "http://127.0.0.1/x.png",
    "http://localhost/x.png",
    "http://foo.localhost/x.png",
    "http://2130706433/x.png",  # decimal
    "http://0x7f000001/x.png",  # hex
    "http://0177.0.0.1/x.png",  # octal
    "http://0x7f.0.0.1/x.png",  # mixed
    "http://127.1/x.png",  # short form
    "http://017700000001/x.png",  # octal, one part
    "http://[::1]/x.png",
    "http://[::ffff:127.0.0.1]/x.png",  # IPv4-mapped IPv6
    "http://[::ffff:7f00:1]/x.png",
    "http://[64:ff9b::a9fe:a9fe]/x.png",  # NAT64 of 169.254.169.254
    "http://[2002:a9fe:a9fe::]/x.png",  # 6to4 of 169.254.169.254
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://100.100.100.200/latest/meta-data/",  # Alibaba metadata (CGNAT range)
    "http://[fd00:ec2::254]/latest/meta-data/",  # AWS IPv6 metadata (ULA)
    "http://10.1.2.3/x.png",
    "http://172.16.0.1/x.png",
    "http://192.168.0.1/x.png",
    "http://0.0.0.0/x.png",
    "http://[::]/x.png",
    "http://224.0.0.1/x.png",  # multicast
    "http://[fe80::1%25eth0]/x.png",  # link-local with zone id
    "http://inner.example/x.png",  # resolves to a private address
    "http://rebind.example/x.png",  # one of its addresses is private
    "http://nowhere.example/x.png",  # does not resolve
    "http://1.2.3.4.5/x.png",  # numeric but not an address
    "http://256.1.1.1/x.png",
    "file:///etc/passwd",
    "gopher://public.example/",
    "ftp://public.example/x",
    "http:///x.png",
    "http://[zz::1]/x.png",
]

ALLOWED = [
    "https://public.example/cat.png",
    "http://93.184.216.34/cat.png",
    "https://v6.example/cat.png",
    "https://[2606:2800:220:1:248:1893:25c8:1946]/cat.png",
    "data:image/png;base64,iVBORw0KGgo=",
    "http://[::ffff:93.184.216.34]/cat.png",
]


@pytest.mark.parametrize("url", BLOCKED)
async def test_blocked(url: str) -> None:
    policy = SSRFPolicy(resolver=resolver(DNS))
    with pytest.raises(URLNotAllowed):
        await policy.check(url)


@pytest.mark.parametrize("url", ALLOWED)
async def test_allowed(url: str) -> None:
    await SSRFPolicy(resolver=resolver(DNS)).check(url)


async def test_allow_lists_open_named_hosts_and_networks() -> None:
    settings = SSRFSettings(allow_hosts=["*.corp.example", "images.internal"], allow_networks=["10.20.0.0/16"])
    policy = SSRFPolicy(settings, resolver=resolver({"cdn.corp.example": ["10.9.9.9"]}))
    await policy.check("http://cdn.corp.example/a.png")
    await policy.check("http://images.internal/a.png")
    await policy.check("http://10.20.3.4/a.png")
    with pytest.raises(URLNotAllowed):
        await policy.check("http://10.21.3.4/a.png")
    with pytest.raises(URLNotAllowed):
        await policy.check("http://corp.example.evil/a.png")


@pytest.mark.parametrize(
    ("host", "expected"),
    [("2130706433", "127.0.0.1"), ("0x7f.1", "127.0.0.1"), ("10.1.2", "10.1.0.2"), ("0300.0250.1.1", "192.168.1.1")],
)
def test_inet_aton_spellings(host: str, expected: str) -> None:
    assert str(parse_host_ip(host)) == expected


def test_names_spelt_with_hex_letters_are_names() -> None:
    assert parse_host_ip("cafe.be") is None
    assert parse_host_ip("example.com") is None


async def test_transport_checks_every_redirect_hop() -> None:
    """An allowed URL that redirects to the metadata address is stopped at the hop, before it is sent."""
    policy = SSRFPolicy(SSRFSettings(allow_networks=["127.0.0.0/8"]), resolver=resolver(DNS))
    async with FakeProvider(seed=0) as fake:
        fake.script(Fault.raw(302, headers={"Location": "http://169.254.169.254/latest/meta-data/"}))
        async with httpx.AsyncClient(transport=policy.transport(), follow_redirects=True) as client:
            with pytest.raises(URLNotAllowed, match=r"169\.254\.169\.254"):
                await client.post(
                    fake.openai_base_url + "/chat/completions",
                    json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
                )
        assert len(fake.requests) == 1
