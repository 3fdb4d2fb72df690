"""The model-call view and the charts against a real SQLite store and key store: who sees
which calls, the trace link from the configured template, and chart values as text."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from legato.server import KeyStore
from legato.server._spend import SpendRecorder
from legato.server.ui import DashboardSources, mount_dashboard
from legato.store import NewRun, RunStore, call_values, record_calls
from legato.store._schema import runs

ADMIN = "admin-key-for-call-tests"
NOW = 2_000_000_000.0 - 2_000_000_000.0 % 86400 + 12 * 3600  # noon UTC, 2033-05-18
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[RunStore]:
    s = await RunStore(f"sqlite+aiosqlite:///{tmp_path / 'calls.db'}").open()
    yield s
    await s.aclose()


def app_for(store: RunStore, keys: KeyStore) -> FastAPI:
    app = FastAPI()
    sources = DashboardSources(store=store, admin_key=ADMIN, keys=keys, clock=lambda: NOW,
                               trace_url="https://jaeger.example/trace/{trace_id}")  # fmt: skip
    mount_dashboard(app, sources)
    return app


def client(app: FastAPI, key: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 4321))
    return httpx.AsyncClient(transport=transport, base_url="http://dash", headers={"authorization": f"Bearer {key}"})


def _text(html: str) -> str:
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    return re.sub(r" ([,)])", r"\1", text).replace("( ", "(")


async def _seed(store: RunStore, alice: str, bob: str) -> None:
    def call(model: str, at: float, cost: float, latency: float, status: str = "ok", **kw: object) -> dict[str, object]:
        return {"model": model, "at": at, "cost": cost, "latency_s": latency, "status": status, "prompt": "user: hi",
                "answer": "hello", **kw}  # fmt: skip

    day = 86400
    rows = [
        call_values(
            call(
                "assistant",
                NOW - 60,
                0.25,
                0.2,
                deployment="assistant/backup",
                trace_id=TRACE,
                path=[{"failed": "primary", "target": "next deployment", "error": "ServerError", "kind": "deployment"}],
                prompt="user: alice asks sk-proj-secretsecret0123456789",
            ),
            store,
            source="gateway",
            tenant=alice,
            request_id="req-alice",
        ),
        call_values(call("assistant", NOW - day, 1.5, 0.4), store, source="gateway", tenant=alice),
        call_values(
            call("assistant", NOW - 30, 0.5, 0.6, "ServerError", error="upstream 500"),
            store,
            source="gateway",
            tenant=bob,
            request_id="req-bob",
        ),
        call_values(call("embedder", NOW - 20, 0.0, 0.05), store, source="gateway", tenant=bob),
    ]
    await record_calls(store, rows)


async def test_each_key_sees_its_own_gateway_calls_and_admins_see_all(store: RunStore) -> None:
    keys = KeyStore(store.engine, cache_ttl_s=0)
    alice, alice_secret = await keys.create("alice", ["runs:read", "chat"], budget_usd=4.0, budget_period="day")
    bob, bob_secret = await keys.create("bob", ["runs:read", "chat"])
    await _seed(store, alice.id, bob.id)
    app = app_for(store, keys)
    async with client(app, alice_secret) as c:
        page = (await c.get("/ui/calls")).text
    assert "req-alice" in page
    assert "req-bob" not in page
    assert f'href="https://jaeger.example/trace/{TRACE}"' in page
    assert "sk-proj-secretsecret0123456789" not in page
    text = _text(page)
    assert "primary failed with ServerError, moved to next deployment" in text
    assert "answered by assistant/backup" in text
    async with client(app, ADMIN) as c:
        every = (await c.get("/ui/calls")).text
        only_bob = (await c.get("/ui/calls", params={"key": bob.id})).text
    assert "req-alice" in every
    assert "req-bob" in every
    assert "req-alice" not in only_bob
    assert "upstream 500" in only_bob
    async with client(app, bob_secret) as c:  # a key cannot ask for another key's calls
        assert "req-alice" not in (await c.get("/ui/calls", params={"key": alice.id})).text


async def test_charts_show_the_seeded_values(store: RunStore) -> None:
    keys = KeyStore(store.engine, cache_ttl_s=0)
    alice, alice_secret = await keys.create("alice", ["runs:read"], budget_usd=4.0, budget_period="day")
    bob, _ = await keys.create("bob", ["runs:read"])
    await _seed(store, alice.id, bob.id)
    spend = SpendRecorder(store.engine, clock=lambda: NOW)  # what the gateway counts budgets with
    spend.add(alice.id, "assistant", 100, 50, 1.0)
    await spend.flush()
    app = app_for(store, keys)
    async with client(app, ADMIN) as c:
        page = (await c.get("/ui/charts", params={"days": 7})).text
    text = _text(page)
    # Spend per day by model: the table under the chart, one row per day with a spend.
    table = _text(re.search(r'id="chart-spend-model-table".*?</table>', page, re.S).group(0))  # type: ignore[union-attr]
    assert "Day assistant embedder Total" in table  # the costliest series first
    assert "2033-05-17 $1.50 $0 $1.50" in table
    assert "2033-05-18 $0.75 $0 $0.75" in table
    # Error rate and latency per model (nearest-rank percentiles of 0.2, 0.4, 0.6 s).
    assert "assistant 33.3% (1 of 3 calls)" in text
    assert "embedder 0.0% (0 of 1 call)" in text
    assert "assistant p50 400 ms · p95 600 ms" in text
    assert "<title" in page
    assert "<desc" in page
    # Budgets come from the spend records the gateway enforces them with.
    budgets = _text(re.search(r'id="chart-budgets".*?</figure>', page, re.S).group(0))  # type: ignore[union-attr]
    assert f"alice ({alice.prefix}…) $1.00 of $4.00 this day (25%)" in budgets
    assert "bob" not in budgets  # no budget, no bar
    async with client(app, alice_secret) as c:
        own = _text((await c.get("/ui/charts")).text)
    assert "assistant 0.0% (0 of 2 calls)" in own  # bob's failed call is not alice's
    assert "embedder" not in own


async def test_a_runs_page_lists_its_model_calls(store: RunStore) -> None:
    keys = KeyStore(store.engine, cache_ttl_s=0)
    record, _ = await store.create_run(NewRun(pipeline="p", version_hash="v", inputs={}, tenant=""))
    call = {"model": "assistant", "status": "ok", "at": NOW, "latency_s": 1.25, "ttft_s": 0.3, "cost": 0.000011,
            "deployment": "gpt-backup", "prompt": "user: summarise", "answer": "a summary"}  # fmt: skip
    await record_calls(store, [call_values(call, store, source="step", run_id=record.id, step="ask", attempt=1)])
    async with client(app_for(store, keys), ADMIN) as c:
        page = (await c.get(f"/ui/runs/{record.id}")).text
    section = _text(re.search(r'id="run-calls".*?</section>', page, re.S).group(0))  # type: ignore[union-attr]
    assert "Model calls (1)" in section
    assert "ask assistant → gpt-backup" in section
    assert "First token 300 ms" in section
    assert "$0.000011" in section
    assert "user: summarise" in section
    assert "a summary" in section
    finished = sa.update(runs).where(runs.c.id == record.id).values(status="succeeded", finished_at=NOW)
    await store.run_sync(lambda conn: conn.execute(finished))
    async with client(app_for(store, keys), ADMIN) as c:  # the live view carries them too
        live = (await c.get(f"/ui/live/runs/{record.id}")).text
    assert '"calls-box"' in live
    assert "a summary" in live


def test_a_spend_chart_of_many_keys_adds_up_all_but_the_costliest_six() -> None:
    from datetime import UTC, datetime

    from legato.server.ui._charts import spend_chart
    from legato.store import SpendPoint

    points = [SpendPoint("2033-05-18", f"key-{i}", float(i), 1) for i in range(1, 10)]  # key-9 costs most
    chart = spend_chart(points, days=1, today=datetime(2033, 5, 18, tzinfo=UTC), usd=lambda v: f"{v:g}")
    assert chart.table[0] == ["Day", "key-9", "key-8", "key-7", "key-6", "key-5", "key-4", "all others", "Total"]
    assert chart.table[1] == ["2033-05-18", "9", "8", "7", "6", "5", "4", "6", "45"]  # 1 + 2 + 3 = 6
    [column] = chart.columns
    assert [s.css for s in column.segments] == ["c1", "c2", "c3", "c4", "c5", "c6", "c0"]
    assert abs(sum(s.width for s in column.segments) - 1.0) < 1e-9  # the tallest day fills the height
