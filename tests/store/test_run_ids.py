"""Run-id prefixes: a unique prefix resolves, an ambiguous one names its candidates (within a tenant)."""

from __future__ import annotations

import re

import pytest

from legato.engine import Pipeline
from legato.errors import AmbiguousRunId, RunNotFound
from legato.store import NewRun, RunStore


async def add(store: RunStore, run_id: str, tenant: str = "") -> None:
    await store.create_run(NewRun(pipeline="p", version_hash="v", inputs={}, run_id=run_id, tenant=tenant))


async def test_unique_prefixes_resolve_and_ambiguous_ones_list_the_runs(store: RunStore) -> None:
    for run_id in ("01a2000000aa11", "01a2000000ab22", "01a2000001ff33"):
        await add(store, run_id)
    assert await store.resolve_run_id("01a2000000aa") == "01a2000000aa11"
    assert await store.resolve_run_id("01a2000001") == "01a2000001ff33"
    assert await store.resolve_run_id("01a2000000ab22") == "01a2000000ab22"  # a whole id
    assert (await store.get_run("01a2000000ab")).id == "01a2000000ab22"
    with pytest.raises(AmbiguousRunId) as info:
        await store.get_run("01a2000000a")
    assert info.value.candidates == ["01a2000000ab22", "01a2000000aa11"]
    assert "matches 2 runs (01a2000000ab22, 01a2000000aa11)" in str(info.value)
    assert isinstance(info.value, RunNotFound)  # callers that only know "not found" still work
    with pytest.raises(RunNotFound, match="no run with id '01a3'"):
        await store.resolve_run_id("01a3")
    with pytest.raises(RunNotFound):
        await store.resolve_run_id("")
    with pytest.raises(RunNotFound):
        await store.resolve_run_id("01a2%")  # LIKE wildcards are literal characters


async def test_many_candidates_are_capped(store: RunStore) -> None:
    for n in range(12):
        await add(store, f"01b3{n:04d}")
    with pytest.raises(AmbiguousRunId, match="matches more than 10 runs") as info:
        await store.resolve_run_id("01b3")
    assert len(info.value.candidates) == 10


async def test_prefixes_resolve_within_a_tenant(store: RunStore) -> None:
    await add(store, "01c4000000aa", tenant="alice")
    await add(store, "01c4000000bb", tenant="bob")
    assert await store.resolve_run_id("01c4", tenant="alice") == "01c4000000aa"
    assert (await store.get_run("01c4", tenant="bob")).id == "01c4000000bb"
    with pytest.raises(RunNotFound) as info:
        await store.get_run("01c4000000bb", tenant="alice")
    assert not isinstance(info.value, AmbiguousRunId)
    with pytest.raises(AmbiguousRunId) as ambiguous:
        await store.resolve_run_id("01c4")  # no tenant: every run
    assert set(ambiguous.value.candidates) == {"01c4000000aa", "01c4000000bb"}


async def test_short_ids_are_the_shortest_unique_prefixes(store: RunStore) -> None:
    ids = ["01d5000000aa11", "01d5000000ab22", "01d5000001ff33", "01d6999999ff44"]
    for run_id in ids:
        await add(store, run_id, tenant="t")
    await add(store, "01d5000001ff99", tenant="other")
    short = await store.short_ids(ids, tenant="t")
    assert short == {
        "01d5000000aa11": "01d5000000aa",
        "01d5000000ab22": "01d5000000ab",
        "01d5000001ff33": "01d5000001",
        "01d6999999ff44": "01d69999",
    }
    assert (await store.short_ids(["01d5000001ff33"]))["01d5000001ff33"] == "01d5000001ff3"  # across tenants
    for run_id, prefix in short.items():
        assert await store.resolve_run_id(prefix, tenant="t") == run_id


async def test_listed_short_ids_of_real_run_ids_resolve(store: RunStore) -> None:
    for _ in range(20):  # ids made in the same few milliseconds share 9-12 leading characters
        await store.create_run(NewRun(pipeline="p", version_hash="v", inputs={}))
    records = await store.list_runs(limit=100)
    short = await store.short_ids(r.id for r in records)
    assert len(set(short.values())) == len(records)
    for run_id, prefix in short.items():
        assert len(prefix) >= 8
        assert await store.resolve_run_id(prefix) == run_id


async def test_python_and_stored_runs_share_one_id_format(store: RunStore) -> None:
    p = Pipeline("id_format")

    @p.step
    async def one() -> int:
        return 1

    plain = (await p.run()).run_id  # no store: the engine's id
    record, _ = await store.create_run(NewRun(pipeline="p", version_hash="v", inputs={}))  # the store's (the CLI's) id
    for run_id in (plain, record.id):
        assert re.fullmatch(r"[0-9a-f]{32}", run_id), run_id
    assert plain[:12] <= record.id[:12]  # both start with the creation time
