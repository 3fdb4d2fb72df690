"""A real gateway on a loopback port (uvicorn in a thread) in front of the fake provider.

The fake provider speaks the OpenAI and Anthropic wire formats; the gateway reaches
it through legato's own adapters, and the tests talk to the gateway with the
official SDKs or plain httpx, exactly as clients do.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from _serve import serve_in_thread
from legato.config import LegatoConfig
from legato.providers import create
from legato.server import MappingCatalog, ServerSettings, SSRFSettings, create_app
from legato.testing import FakeProvider

MASTER = "mk-test-master-key-0123456789"

PIPELINES = {
    "shout": """\
name: shout
inputs:
  text: {type: string}
steps:
  upper:
    uses: ./steps.py:upper
    with: {text: "${inputs.text}"}
outputs:
  result: ${steps.upper}
""",
    "nap": """\
name: nap
inputs:
  seconds: {type: number}
steps:
  sleep:
    uses: ./steps.py:nap
    with: {seconds: "${inputs.seconds}"}
""",
}

STEPS = """\
import anyio


def upper(text: str) -> str:
    return text.upper()


async def nap(seconds: float) -> str:
    await anyio.sleep(seconds)
    return "rested"
"""


@dataclass
class Running:
    url: str
    app: Any
    fake: FakeProvider

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {MASTER}"}, timeout=30)

    def create_key(self, scopes: list[str], **limits: Any) -> str:
        with self.admin() as c:
            r = c.post("/v1/admin/keys", json={"name": "test", "scopes": scopes, **limits})
            assert r.status_code == 201, r.text
            return str(r.json()["key"])

    def client(self, key: str | None = None, **headers: str) -> httpx.Client:
        h = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers={**h, **headers}, timeout=30)


def closed_port() -> int:
    """A local port nothing listens on (bound, then closed): a dependency that is down."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def catalog_for(fake: FakeProvider) -> MappingCatalog:
    return MappingCatalog(
        {
            "gpt-fake": create("openai", "gpt-fake", api_key="sk-fake", base_url=fake.openai_base_url),
            "claude-fake": create("anthropic", "claude-fake", api_key="sk-ant-fake", base_url=fake.anthropic_base_url),
        }
    )


def gateway_settings(tmp: Path, **overrides: Any) -> ServerSettings:
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp / 'gateway.db'}",
        "master_key": MASTER,
        "max_body_bytes": 256 * 1024,
        "max_messages": 50,
        "max_output_tokens": 4096,
        "key_cache_ttl_s": 0,
        "ssrf": SSRFSettings(resolve_dns=False),
        "auth_failures": 0,  # these tests send many wrong keys on purpose (tests/security covers the throttle)
        **overrides,
    }
    return ServerSettings.model_validate(values)


def pipeline_config(tmp: Path) -> LegatoConfig:
    """A config whose ``pipelines:`` section serves ``shout`` (upper-cases text) and ``nap`` (sleeps)."""
    (tmp / "steps.py").write_text(STEPS)
    for name, text in PIPELINES.items():
        (tmp / f"{name}.yaml").write_text(text)
    return LegatoConfig({"pipelines": [str(tmp)]}, source=str(tmp / "legato.yaml"))


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    with FakeProvider(seed=0).in_thread() as provider:
        yield provider


@pytest.fixture(scope="module")
def gateway(fake: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("gateway")
    app = create_app(gateway_settings(tmp), catalog=catalog_for(fake), config=pipeline_config(tmp))
    with serve_in_thread(app) as url:
        yield Running(url, app, fake)


@pytest.fixture(autouse=True)
def _fresh_fake(request: pytest.FixtureRequest) -> None:
    if "fake" in request.fixturenames:
        request.getfixturevalue("fake").clear()
