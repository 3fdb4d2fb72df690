"""``legato serve --workers 2``: two worker processes on one port, SQLite store.

Connections opened together are spread over both workers (each has its own
``SO_REUSEPORT`` socket). Each other test holds one kept-alive connection to each worker (psutil tells which process
accepted which connection), so what one worker knows and the other does not is
tested, not left to how the kernel spreads connections: spend written by both is
all in the store, a key revoked through one is refused by the other (Redis pub/sub),
and SIGTERM opens the drain window in both.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import sqlalchemy as sa

from _serve import MASTER, ServeProcess
from legato.server._keys import spend_table
from legato.testing import FakeProvider

pytestmark = pytest.mark.slow

CONFIG = """\
models:
  gpt-fake:
    provider: openai
    model: gpt-fake
    base_url: {base_url}
    api_key: env:SECURITY_FAKE_KEY
    price: {{input: 1000, output: 1000}}
server:
  master_key: env:SECURITY_MASTER_KEY
  database_url: sqlite:///{db}
  key_cache_ttl_s: 3600
  idle_timeout_s: 300
  max_connections_per_client: 0
  drain_delay_s: {drain_delay_s}
{extra}"""

CHAT = {"model": "gpt-fake", "messages": [{"role": "user", "content": "hello there"}]}


class Pinned:
    """One kept-alive connection and the worker process that accepted it."""

    def __init__(self, served: ServeProcess) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
        self.conn.connect()
        assert self.conn.sock is not None
        self.local = self.conn.sock.getsockname()[1]
        assert self.request("GET", "/healthz")[0] == 200  # accepted by now
        self.worker = _owner(served, self.local)

    def request(self, method: str, path: str, key: str | None = None, body: Any = None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self.conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        sock = self.conn.sock
        response = self.conn.getresponse()
        assert sock is not None
        assert sock.getsockname()[1] == self.local, "the connection was reopened"
        return response.status, json.loads(response.read() or b"null")

    def close(self) -> None:
        self.conn.close()


def _owner(served: ServeProcess, local_port: int) -> int:
    for child in psutil.Process(served.proc.pid).children(recursive=True):
        for c in child.net_connections(kind="tcp"):
            if c.raddr and c.raddr.port == local_port and c.laddr.port == served.port:
                return child.pid
    raise AssertionError(f"no worker holds the connection from port {local_port}")


def one_per_worker(served: ServeProcess, workers: int = 2) -> list[Pinned]:
    """Open connections until each worker holds one; the others are closed."""
    by_worker: dict[int, Pinned] = {}
    deadline = time.monotonic() + 60  # a worker may still be starting
    while time.monotonic() < deadline:
        pinned = Pinned(served)
        if pinned.worker in by_worker:
            pinned.close()
        else:
            by_worker[pinned.worker] = pinned
        if len(by_worker) == workers:
            return list(by_worker.values())
    raise AssertionError(f"connections reached only workers {sorted(by_worker)}")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    with FakeProvider(seed=0).in_thread() as provider:
        yield provider


def serve(tmp: Path, fake: FakeProvider, *, extra: str = "", drain_delay_s: float = 0) -> ServeProcess:
    config = CONFIG.format(base_url=fake.openai_base_url, db=tmp / "legato.db", extra=extra,
                           drain_delay_s=drain_delay_s)  # fmt: skip
    (tmp / "legato.yaml").write_text(config)
    served = ServeProcess(tmp / "legato.yaml", "--workers", "2")
    served.wait_ready()
    return served


def test_connections_opened_together_are_spread_over_both_workers(fake: FakeProvider, tmp_path: Path) -> None:
    served = serve(tmp_path, fake)
    pinned: list[Pinned] = []
    try:
        pinned = one_per_worker(served)  # both have started
        for p in pinned:
            p.close()
        pinned = [Pinned(served) for _ in range(32)]
        per_worker = Counter(p.worker for p in pinned)
        assert len(per_worker) == 2
        assert min(per_worker.values()) >= 4, per_worker  # a hash of the addresses; 4 of 32 is far below even
    finally:
        for p in pinned:
            p.close()
        served.stop()


def test_spend_written_by_both_workers_is_all_in_the_store(fake: FakeProvider, tmp_path: Path) -> None:
    served = serve(tmp_path, fake)
    try:
        key = served.create_key(["chat"])
        pinned = one_per_worker(served)
        for p in pinned:
            for _ in range(5):
                status, body = p.request("POST", "/v1/chat/completions", key, CHAT)
                assert status == 200, body
    finally:
        for p in locals().get("pinned", []):
            p.close()
        served.stop()  # each worker flushes its spend records at shutdown
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'legato.db'}")
    with engine.connect() as conn:
        requests = conn.execute(sa.select(sa.func.sum(spend_table.c.requests))).scalar()
    engine.dispose()
    assert requests == 10


@pytest.mark.redis
def test_a_key_revoked_through_one_worker_is_refused_by_the_other(
    fake: FakeProvider, tmp_path: Path, redis_url: str
) -> None:
    prefix = f"legato-test:workers-{os.getpid()}:"
    served = serve(tmp_path, fake, extra=f'  redis_url: {redis_url}\n  redis_prefix: "{prefix}"\n')
    pinned: list[Pinned] = []
    try:
        key = served.create_key(["chat"])
        pinned = one_per_worker(served)
        for p in pinned:  # both workers now hold the key in their cache (for an hour)
            assert p.request("POST", "/v1/chat/completions", key, CHAT)[0] == 200
        first, other = pinned
        assert first.request("DELETE", f"/v1/admin/keys/{key[:12]}", MASTER)[0] == 200
        deadline = time.monotonic() + 30
        status = 200
        while status == 200 and time.monotonic() < deadline:  # the message crosses Redis
            status = other.request("POST", "/v1/chat/completions", key, CHAT)[0]
        assert status == 401
    finally:
        for p in pinned:
            p.close()
        served.stop()


def test_sigterm_opens_the_drain_window_in_every_worker_and_a_second_one_ends_it(
    fake: FakeProvider, tmp_path: Path
) -> None:
    served = serve(tmp_path, fake, drain_delay_s=600)
    pinned: list[Pinned] = []
    try:
        pinned = one_per_worker(served)
        served.proc.send_signal(signal.SIGTERM)
        for p in pinned:
            deadline = time.monotonic() + 30
            status, body = p.request("GET", "/readyz")
            while status == 200 and time.monotonic() < deadline:  # the signal reaches each worker
                status, body = p.request("GET", "/readyz")
            assert status == 503, body
            assert p.request("GET", "/healthz")[0] == 200  # still serving in the window
        for p in pinned:
            p.close()
        served.proc.send_signal(signal.SIGTERM)  # passed on to both workers: the window ends
        assert served.proc.wait(60) == 0, served.log()
    finally:
        for p in pinned:
            p.close()
        served.stop()
