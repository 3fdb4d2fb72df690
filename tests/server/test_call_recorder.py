"""The gateway's call records are written in bounded batches: a flush as soon as a
batch's worth is buffered (not only once a second), and no transaction larger than a
batch, so that writing them never stalls the event loop for long."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest
import sqlalchemy as sa

import legato.server._calls as calls_module
from legato.observe import ModelCall
from legato.server._calls import CallRecorder
from legato.store import RunStore
from legato.store._schema import model_calls


def a_call(i: int) -> ModelCall:
    return ModelCall(model="gpt-fake", status="ok", at=time.time(), latency_s=0.01, prompt=f"user: {i}", answer="ok")


async def stored(store: RunStore) -> int:
    query = sa.select(sa.func.count()).select_from(model_calls)
    return int(await store.run_sync(lambda conn: conn.execute(query).scalar_one(), readonly=True))


async def test_a_full_batch_is_written_before_the_interval_is_over(tmp_path: Path) -> None:
    async with RunStore(tmp_path / "calls.db") as store:
        recorder = CallRecorder(store, interval_s=3600, batch_rows=50)
        async with anyio.create_task_group() as tg:
            tg.start_soon(recorder.run)
            for i in range(49):
                recorder.add(a_call(i), "k1", f"req_{i}")
            await anyio.sleep(0.2)
            assert await stored(store) == 0  # under a batch: it waits for the interval
            recorder.add(a_call(49), "k1", "req_49")
            with anyio.fail_after(10):
                while await stored(store) < 50:
                    await anyio.sleep(0.02)
            tg.cancel_scope.cancel()


async def test_a_flush_writes_at_most_a_batch_per_transaction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[int] = []
    real = calls_module.record_calls

    async def counting(store: RunStore, rows: list[dict[str, object]]) -> None:
        sizes.append(len(rows))
        await real(store, rows)

    monkeypatch.setattr(calls_module, "record_calls", counting)
    async with RunStore(tmp_path / "calls.db") as store:
        recorder = CallRecorder(store, batch_rows=100)
        for i in range(250):
            recorder.add(a_call(i), "k1", f"req_{i}")
        await recorder.flush()
        assert sizes == [100, 100, 50]
        assert await stored(store) == 250
