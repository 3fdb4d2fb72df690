"""Real ``legato serve`` processes for the adversarial suite.

:class:`ServedGateway` starts the CLI as a subprocess on a free loopback port with a
``legato.yaml`` written into a temporary directory (SQLite by default; pass
``database_url`` / ``redis_url`` for PostgreSQL and Redis), waits for ``/readyz``
and stops it with SIGTERM. The models point at the fake provider; the pipelines run
plain Python steps, so nothing here calls a paid API.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from legato.testing import FakeProvider

MASTER = "mk-security-0123456789abcdef"

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServedGateway:
    """One ``legato serve`` process; ``extra`` is appended to the ``server:`` section."""

    def __init__(
        self, tmp: Path, fake: FakeProvider, *, extra: str = "", database_url: str | None = None,
        redis_url: str | None = None,
    ) -> None:  # fmt: skip
        (tmp / "legato.yaml").write_text(CONFIG.format(base_url=fake.openai_base_url, extra=extra))
        for name, text in PIPELINES.items():
            (tmp / name).write_text(text)
        (tmp / "steps.py").write_text(STEPS)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "SECURITY_FAKE_KEY": "sk-fake", "SECURITY_MASTER_KEY": MASTER}
        database = database_url or f"sqlite:///{tmp / 'gateway.db'}"
        cmd = [str(Path(sys.executable).parent / "legato"), "serve", "--config", str(tmp / "legato.yaml"),
               "--port", str(self.port), "--database-url", database]  # fmt: skip
        if redis_url:
            cmd += ["--redis-url", redis_url]
        self.log = (tmp / "serve.log").open("w")
        self.proc = subprocess.Popen(cmd, env=env, cwd=tmp, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"legato serve exited with {self.proc.returncode}; see {self.log.name}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError("legato serve did not become ready")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def client(self, key: str | None = None, headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Client:
        auth = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers={**auth, **(headers or {})}, timeout=30, **kwargs)

    def create_key(self, scopes: list[str], name: str = "security", **limits: Any) -> str:
        with self.client(MASTER) as c:
            r = c.post("/v1/admin/keys", json={"name": name, "scopes": scopes, **limits})
            assert r.status_code == 201, r.text
            return str(r.json()["key"])

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
    gateway = ServedGateway(tmp_path_factory.mktemp("served"), fake)
    try:
        gateway.wait_ready()
        yield gateway
    finally:
        gateway.stop()
