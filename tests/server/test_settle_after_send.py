"""A non-streamed answer goes out before its call is settled: the key's budget hold and
TPM count (a Redis or database round trip in production) are not on the request's path,
and they are settled however the sending ends."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from _serve import serve_in_thread
from legato.server import create_app
from legato.testing import FakeProvider, Reply

from .conftest import MASTER, catalog_for, gateway_settings

CHAT = {"model": "gpt-fake", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
EMBED = {"model": "gpt-fake", "input": "hello"}


class HeldSettle:
    """The gateway's budget store, its ``settle`` held until :meth:`release`."""

    def __init__(self, store: Any) -> None:
        self.inner = store.settle
        self.entered, self.gate = threading.Event(), threading.Event()
        self.settled = 0
        store.settle = self.settle

    async def settle(self, *args: Any, **kw: Any) -> None:
        self.entered.set()
        await anyio.to_thread.run_sync(self.gate.wait)
        await self.inner(*args, **kw)
        self.settled += 1

    def release(self) -> None:
        self.gate.set()

    def wait_settled(self, n: int) -> bool:
        deadline = time.monotonic() + 10
        while self.settled < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.settled == n


@pytest.fixture
def served(tmp_path: Path, fake: FakeProvider) -> Iterator[tuple[str, Any]]:
    app = create_app(gateway_settings(tmp_path), catalog=catalog_for(fake))
    with serve_in_thread(app) as url:
        yield url, app


def _key(url: str) -> str:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {MASTER}"}) as admin:
        r = admin.post("/v1/admin/keys", json={"name": "t", "scopes": ["chat", "embed"], "budget_usd": 5})
        assert r.status_code == 201, r.text
        return str(r.json()["key"])


@pytest.mark.parametrize(("path", "body"), [("/v1/chat/completions", CHAT), ("/v1/embeddings", EMBED)])
def test_the_answer_is_sent_before_the_budget_is_settled(served: tuple[str, Any], path: str, body: Any) -> None:
    url, app = served
    key = _key(url)
    held = HeldSettle(app.state.gateway.limiter.budgets)
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=5) as client:
            r = client.post(path, json=body)  # no answer until the settle is released, were it on the path
            assert r.status_code == 200, r.text
            assert held.entered.wait(10)
            assert held.settled == 0  # answered while the settle still waits
    finally:
        held.release()
    assert held.wait_settled(1)


def test_a_client_gone_before_its_answer_is_still_settled(served: tuple[str, Any], fake: FakeProvider) -> None:
    url, app = served
    key = _key(url)
    held = HeldSettle(app.state.gateway.limiter.budgets)
    held.release()
    fake.script(Reply(text="late", delay=0.5))
    with (
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=0.1) as client,
        pytest.raises(httpx.ReadTimeout),
    ):
        client.post("/v1/chat/completions", json=CHAT)
    assert held.wait_settled(1)  # the call ended after its client left, and was settled
