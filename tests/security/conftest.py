"""Real ``legato serve`` processes for the adversarial suite.

:class:`ServedGateway` starts the CLI as a subprocess on a free loopback port with a
``legato.yaml`` written into a temporary directory (SQLite by default; pass
``database_url`` / ``redis_url`` for PostgreSQL and Redis), waits for ``/readyz``
and stops it with SIGTERM. The models point at the fake provider; the pipelines run
plain Python steps, so nothing here calls a paid API.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from _serve import MASTER, ServeProcess, running
from legato.testing import FakeProvider

__all__ = [
    "MASTER",
    "TERMINAL",
    "ServedGateway",
    "fake",
    "served",
    "two_replicas",
]  # MASTER: what the tests sign in with

CONFIG = """\
models:
  gpt-fake:
    provider: openai
    model: gpt-fake
    base_url: {base_url}
    api_key: env:SECURITY_FAKE_KEY
    price: {{input: 1000, output: 1000}}
pipelines:
  shout: shout.yaml
  boom: boom.yaml
server:
  master_key: env:SECURITY_MASTER_KEY
  key_cache_ttl_s: 0
{extra}
"""

PIPELINES = {
    "shout.yaml": """\
name: shout
inputs:
  text: {type: string}
steps:
  upper:
    uses: ./steps.py:upper
    with: {text: "${inputs.text}"}
""",
    "boom.yaml": """\
name: boom
inputs:
  text: {type: string}
steps:
  explode:
    uses: ./steps.py:explode
    with: {text: "${inputs.text}"}
""",
}

STEPS = """\
def upper(text: str) -> str:
    return text.upper()


def explode(text: str) -> str:
    raise ValueError(f"refused {text}")
"""

TERMINAL = ("succeeded", "failed", "cancelled", "dead")


class ServedGateway(ServeProcess):
    """One ``legato serve`` process of the security ``legato.yaml`` and pipelines; ``extra``
    is appended to the ``server:`` section."""

    def __init__(
        self, tmp: Path, fake: FakeProvider, *, extra: str = "", database_url: str | None = None,
        redis_url: str | None = None,
    ) -> None:  # fmt: skip
        (tmp / "legato.yaml").write_text(CONFIG.format(base_url=fake.openai_base_url, extra=extra))
        for name, text in PIPELINES.items():
            (tmp / name).write_text(text)
        (tmp / "steps.py").write_text(STEPS)
        args = ["--database-url", database_url or f"sqlite:///{tmp / 'gateway.db'}"]
        if redis_url:
            args += ["--redis-url", redis_url]
        super().__init__(tmp / "legato.yaml", *args, env={"SECURITY_FAKE_KEY": "sk-fake"})

    def finished_run(self, key: str, pipeline: str, text: str) -> dict[str, Any]:
        """Start a run with ``key`` over the runs API and wait until it ends."""
        with self.client(key) as c:
            started = c.post(f"/v1/pipelines/{pipeline}/runs", json={"inputs": {"text": text}})
            assert started.status_code == 202, started.text
            deadline = time.monotonic() + 60
            while (run := c.get(f"/v1/runs/{started.json()['id']}").json())["status"] not in TERMINAL:
                assert time.monotonic() < deadline, run
                time.sleep(0.05)
        return dict(run)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    with FakeProvider(seed=0).in_thread() as provider:
        yield provider


@pytest.fixture(scope="module")
def served(fake: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedGateway]:
    """One gateway process on SQLite for the whole module."""
    with running(ServedGateway(tmp_path_factory.mktemp("served"), fake)) as gateway:
        yield gateway


@contextmanager
def two_replicas(
    fake: FakeProvider, tmp_path_factory: pytest.TempPathFactory, extra: str, *, postgres_url: str, redis_url: str,
    redis_prefix: str,
) -> Iterator[tuple[ServedGateway, ServedGateway]]:  # fmt: skip
    """Two gateways on one PostgreSQL database and one Redis (``extra`` names ``redis_prefix``),
    started one after the other (the first migrates the shared database); on exit both
    are stopped and the Redis keys under ``redis_prefix`` deleted."""
    with ExitStack() as stack:
        stack.callback(_delete_keys, redis_url, redis_prefix)
        started = [
            stack.enter_context(running(ServedGateway(tmp_path_factory.mktemp("replica"), fake, extra=extra,
                                                      database_url=postgres_url, redis_url=redis_url)))
            for _ in range(2)
        ]  # fmt: skip
        yield started[0], started[1]


def _delete_keys(redis_url: str, prefix: str) -> None:
    import redis

    r = redis.Redis.from_url(redis_url)
    try:
        names = list(r.scan_iter(match=prefix + "*"))
        if names:
            r.delete(*names)
    finally:
        r.close()
