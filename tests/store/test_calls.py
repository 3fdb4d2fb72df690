"""Model calls in the store, on SQLite and PostgreSQL: what is kept (redacted, sealed when
encryption is on), who sees which gateway calls, and the charts' aggregates computed in
SQL with exact values for seeded data."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from legato.store import (
    LOCAL,
    NewRun,
    Principal,
    RunStore,
    call_values,
    gateway_calls,
    model_stats,
    record_calls,
    run_calls,
    run_durations,
    spend_by_day,
)
from legato.store._schema import model_calls, runs

# Seeded rows live far from real time so that other tests' calls in the shared
# PostgreSQL database never fall into the windows asked for here.
T0 = 2_000_000_000.0 - 2_000_000_000.0 % 86400  # a UTC midnight (2033-05-18)
A = Principal("key-a")
B = Principal("key-b")
ADMIN = Principal("key-admin", sees_all=True)


def _call(model: str = "gpt-x", **kw: Any) -> dict[str, Any]:
    call = {"model": model, "status": "ok", "at": T0, "latency_s": 0.5, "input_tokens": 10, "output_tokens": 5,
            "cost": 0.001, "prompt": "user: hi", "answer": "hello"}  # fmt: skip
    call.update(kw)
    return call


async def test_a_step_call_keeps_what_was_said_redacted_under_its_run(store: RunStore) -> None:
    record, _ = await store.create_run(NewRun(pipeline="p", version_hash="v", inputs={}, tenant="key-a"))
    call = _call(
        deployment="assistant/backup",
        provider="openai",
        ttft_s=0.12,
        cached=False,
        retries=1,
        path=[{"failed": "primary", "target": "next deployment", "error": "ServerError", "kind": "deployment"}],
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        prompt="user: my key is sk-abcdefghijklmnopqrstuvwxyz0123",
        error=None,
    )
    await record_calls(store, [call_values(call, store, source="step", run_id=record.id, step="ask", attempt=1)])
    [row] = await run_calls(store, record.id)
    assert (row.tenant, row.step, row.deployment) == ("key-a", "ask", "assistant/backup")
    assert (row.retries, row.fallbacks) == (1, 1)
    assert (row.ttft_s, row.trace_id, row.cost, row.input_tokens, row.ok) == (
        0.12,
        "4bf92f3577b34da6a3ce929d0e0e4736",
        0.001,
        10,
        True,
    )
    assert "sk-abcdefghijklmnopqrstuvwxyz0123" not in row.detail["prompt"]
    assert row.detail["answer"] == "hello"
    assert row.detail["path"][0]["error"] == "ServerError"


async def test_what_was_said_is_sealed_when_encryption_is_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEGATO_TEST_CALLS_KEK", base64.urlsafe_b64encode(os.urandom(32)).decode())
    async with RunStore(tmp_path / "sealed.db", encryption_key="env:LEGATO_TEST_CALLS_KEK") as store:
        row = call_values(_call(prompt="user: the secret plan", answer="the answer"), store, source="gateway",
                          tenant="key-a")  # fmt: skip
        await record_calls(store, [row])
        raw = await store.run_sync(lambda conn: conn.execute(sa.select(model_calls.c.detail)).scalar_one())
        assert raw.startswith("legato:enc:v1:")
        assert "secret plan" not in raw
        [seen] = await gateway_calls(store, A)
        assert seen.detail["prompt"] == "user: the secret plan"
    assert b"secret plan" not in (tmp_path / "sealed.db").read_bytes()


async def test_gateway_calls_are_seen_by_their_key_and_by_admins(store: RunStore) -> None:
    rows = [call_values(_call(at=T0 + i), store, source="gateway", tenant=t, request_id=f"req-{i}")
            for i, t in enumerate(["key-a", "key-b", "key-a"])]  # fmt: skip
    await record_calls(store, rows)
    mine = await gateway_calls(store, A)
    assert [c.request_id for c in mine][:2] == ["req-2", "req-0"]  # newest first
    assert {c.tenant for c in mine} == {"key-a"}
    assert {c.tenant for c in await gateway_calls(store, B)} == {"key-b"}
    assert {c.tenant for c in await gateway_calls(store, ADMIN, key_id="key-b")} == {"key-b"}
    assert {"key-a", "key-b"} <= {c.tenant for c in await gateway_calls(store, ADMIN, limit=500)}
    assert {c.tenant for c in await gateway_calls(store, B, key_id="key-a")} == {"key-b"}  # no way round the rule
    page = await gateway_calls(store, A, limit=1)
    assert [c.request_id for c in await gateway_calls(store, A, before=page[0].id, limit=1)] == ["req-0"]


async def test_spend_per_day_by_model_and_by_key(store: RunStore) -> None:
    day = 86400
    t1 = T0 + 100 * day  # days no other test writes to
    seeded = [
        ("key-a", "gpt-x", t1 + 10, 0.25),
        ("key-a", "gpt-x", t1 + 20, 0.5),
        ("key-b", "claude-y", t1 + 30, 1.0),
        ("key-a", "claude-y", t1 + day + 5, 2.0),
        ("key-b", "gpt-x", t1 + 2 * day - 1, 4.0),  # the last second of the second day
    ]
    await record_calls(
        store, [call_values(_call(m, at=at, cost=cost), store, source="gateway", tenant=t) for t, m, at, cost in seeded]
    )
    by_model = {(p.day, p.series): (p.cost, p.calls) for p in await spend_by_day(store, ADMIN, since=t1)}
    assert by_model == {
        ("2033-08-26", "claude-y"): (1.0, 1),
        ("2033-08-26", "gpt-x"): (0.75, 2),
        ("2033-08-27", "claude-y"): (2.0, 1),
        ("2033-08-27", "gpt-x"): (4.0, 1),
    }
    by_key = {(p.day, p.series): p.cost for p in await spend_by_day(store, ADMIN, since=t1, by="tenant")}
    assert by_key == {("2033-08-26", "key-a"): 0.75, ("2033-08-26", "key-b"): 1.0,
                      ("2033-08-27", "key-a"): 2.0, ("2033-08-27", "key-b"): 4.0}  # fmt: skip
    own = {(p.day, p.series): p.cost for p in await spend_by_day(store, A, since=t1)}
    assert own == {("2033-08-26", "gpt-x"): 0.75, ("2033-08-27", "claude-y"): 2.0}
    assert await spend_by_day(store, ADMIN, since=t1 + 3 * day) == []


async def test_error_rate_and_latency_percentiles_per_model(store: RunStore) -> None:
    rows = [call_values(_call("m-fast", at=T0 + i, latency_s=float(i), status="ok" if i % 5 else "ServerError"), store,
                        source="gateway", tenant="key-p") for i in range(1, 21)]  # fmt: skip
    rows.append(call_values(_call("m-slow", at=T0, latency_s=7.0), store, source="gateway", tenant="key-p"))
    await record_calls(store, rows)
    stats = {s.model: s for s in await model_stats(store, Principal("key-p"), since=T0)}
    fast = stats["m-fast"]
    assert (fast.calls, fast.errors, fast.error_rate) == (20, 4, 0.2)
    assert (fast.p50_s, fast.p95_s) == (10.0, 19.0)  # nearest rank: the 10th and the 19th of 1..20
    assert (stats["m-slow"].calls, stats["m-slow"].p50_s, stats["m-slow"].p95_s) == (1, 7.0, 7.0)
    assert await model_stats(store, Principal("key-nobody"), since=T0) == []


async def test_run_durations_per_pipeline(store: RunStore) -> None:
    durations = {"chart-p": [1.0, 2.0, 3.0, 4.0, 10.0], "chart-q": [5.0]}
    for pipeline, values in durations.items():
        for i, seconds in enumerate(values):
            record, _ = await store.create_run(
                NewRun(pipeline=pipeline, version_hash="v", inputs={"i": i}, tenant="key-r")
            )
            status = "failed" if seconds == 10.0 else "succeeded"
            update = (
                sa.update(runs)
                .where(runs.c.id == record.id)
                .values(status=status, started_at=T0 + i, finished_at=T0 + i + seconds)
            )
            await store.run_sync(lambda conn, u=update: conn.execute(u))
    stats = {s.pipeline: s for s in await run_durations(store, Principal("key-r"), since=T0)}
    p = stats["chart-p"]
    assert (p.runs, p.failed, p.p50_s, p.p95_s, p.max_s) == (5, 1, 3.0, 10.0, 10.0)
    assert (stats["chart-q"].runs, stats["chart-q"].p50_s) == (1, 5.0)
    assert set(stats) == {"chart-p", "chart-q"}
    assert {"chart-p", "chart-q"} <= {s.pipeline for s in await run_durations(store, LOCAL, since=T0)}


async def test_prune_takes_the_calls_of_old_runs_and_old_gateway_calls(store: RunStore) -> None:
    now = store.clock()
    old, _ = await store.create_run(NewRun(pipeline="prune-p", version_hash="v", inputs={"n": 1}, tenant="key-prune"))
    finished = sa.update(runs).where(runs.c.id == old.id).values(status="succeeded", finished_at=now)
    await store.run_sync(lambda conn: conn.execute(finished))
    rows = [
        call_values(_call(at=now - 10), store, source="step", run_id=old.id, step="s"),
        call_values(_call(at=now - 100 * 86400), store, source="gateway", tenant="key-prune", request_id="old"),
        call_values(_call(at=now + 86400 - 60), store, source="gateway", tenant="key-prune", request_id="new"),
    ]
    await record_calls(store, rows)
    store.clock.advance(86400)  # type: ignore[attr-defined]
    assert await store.prune(older_than_s=3600) >= 1
    assert await run_calls(store, old.id) == []
    assert [c.request_id for c in await gateway_calls(store, Principal("key-prune"))] == ["new"]
