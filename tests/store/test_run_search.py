"""Finding runs among 1,000: words in inputs, outputs and errors, tags, owner, cost and
duration, with keyset pagination; on SQLite and PostgreSQL. On an encrypted store
only errors are searchable."""

from __future__ import annotations

import uuid

import pytest

from legato.store import NewRun, RunFilter, RunStore
from legato.store._crypto import new_key_text

from .conftest import FakeClock

RUNS = 1000


class Seeded:
    def __init__(self, store: RunStore, pipeline: str) -> None:
        self.store = store
        self.pipeline = pipeline
        self.ids: dict[str, str] = {}

    async def ids_of(self, where: RunFilter, *, limit: int = 500) -> set[str]:
        return {r.id for r in await self.store.list_runs(where, limit=limit)}


async def seed(store: RunStore, clock: FakeClock, pipeline: str) -> Seeded:
    """1,000 finished runs: every third mentions a common word, one each holds a rare
    word in its inputs, its outputs or its error; costs and durations grow with the index."""
    seeded = Seeded(store, pipeline)
    for i in range(RUNS):
        text = f"ticket {i} about {'shipping delay' if i % 3 == 0 else 'billing'}"
        if i == 417:
            text += " from Zanzibar"
        tenant = "key-b" if i % 10 == 0 else "key-a"
        tags = ("vip",) if i % 100 == 7 else ()
        record, _ = await store.create_run(
            NewRun(
                pipeline=pipeline, version_hash="v1", inputs={"text": text, "n": i}, tenant=tenant, owner="w", tags=tags
            )
        )
        clock.advance(i % 50)  # duration: 0..49 s
        status, error, outputs = "succeeded", None, {"summary": f"answer {i}"}
        if i == 733:
            outputs = {"summary": "customer wants a kumquat refund"}
        if i == 950:
            status, error, outputs = "failed", "QuotaExhausted: the monthly quota ran out", None
        await store.finish_run(record.id, "w", status=status, outputs=outputs, error=error, cost=i / 1000)
        clock.advance(1)
        seeded.ids[str(i)] = record.id
    return seeded


async def test_finding_runs_among_a_thousand(store: RunStore, clock: FakeClock) -> None:
    seeded = await seed(store, clock, f"support-{uuid.uuid4().hex[:8]}")  # once: seeding is the slow part
    await words_in_inputs_outputs_and_errors_find_their_runs(seeded)
    await a_search_pages_through_every_match_once(seeded)
    await tags_owner_cost_and_duration_narrow_the_list(seeded)


async def words_in_inputs_outputs_and_errors_find_their_runs(seeded: Seeded) -> None:
    p, ids = seeded.pipeline, seeded.ids
    assert await seeded.ids_of(RunFilter(pipeline=p, text="zanzibar")) == {ids["417"]}
    assert await seeded.ids_of(RunFilter(pipeline=p, text="Kumquat refund")) == {ids["733"]}
    assert await seeded.ids_of(RunFilter(pipeline=p, text="quota")) == {ids["950"]}
    assert await seeded.ids_of(RunFilter(pipeline=p, text="zanz")) == {ids["417"]}  # the start of a word
    assert await seeded.ids_of(RunFilter(pipeline=p, text="zanzibar billing")) == set()  # every word must appear
    assert await seeded.ids_of(RunFilter(pipeline=p, text="ticket 417 zanzibar")) == {ids["417"]}
    assert await seeded.ids_of(RunFilter(pipeline=p, text=ids["733"][:14])) == {ids["733"]}  # a run id prefix
    assert await seeded.ids_of(RunFilter(pipeline=p, text='" OR * NEAR( :* & !')) == set()  # no query syntax


async def a_search_pages_through_every_match_once(seeded: Seeded) -> None:
    where = RunFilter(pipeline=seeded.pipeline, text="shipping delay")
    seen: list[str] = []
    cursor = None
    while True:
        page = await seeded.store.list_runs(where, limit=100, cursor=cursor)
        seen += [r.id for r in page]
        if len(page) < 100:
            break
        cursor = (page[-1].created_at, page[-1].id)
    expected = {seeded.ids[str(i)] for i in range(0, RUNS, 3)}
    assert len(seen) == len(expected) == 334
    assert set(seen) == expected


async def tags_owner_cost_and_duration_narrow_the_list(seeded: Seeded) -> None:
    p, ids = seeded.pipeline, seeded.ids
    assert await seeded.ids_of(RunFilter(pipeline=p, tags=("vip",))) == {ids[str(i)] for i in range(7, RUNS, 100)}
    assert len(await seeded.ids_of(RunFilter(pipeline=p, key="key-b"), limit=1000)) == 100
    assert await seeded.ids_of(RunFilter(pipeline=p, tenant="key-a", key="key-b")) == set()  # not another key's runs
    assert await seeded.ids_of(RunFilter(pipeline=p, min_cost=0.9905)) == {ids[str(i)] for i in range(991, RUNS)}
    cheap_and_slow = RunFilter(pipeline=p, max_cost=0.2, min_duration_s=48.5)
    assert await seeded.ids_of(cheap_and_slow) == {ids[str(i)] for i in range(49, 201, 50)}
    quick = RunFilter(pipeline=p, max_duration_s=0.5, key="key-b", tags=("vip",))
    assert await seeded.ids_of(quick) == set()  # 7, 107, ... are key-a runs
    assert await seeded.ids_of(RunFilter(pipeline=p, max_duration_s=0.5, key="key-b")) == {
        ids[str(i)] for i in range(0, RUNS, 50)
    }


async def test_a_malformed_tag_is_refused(store: RunStore) -> None:
    with pytest.raises(ValueError, match="tag 'two words'"):
        await store.create_run(NewRun(pipeline="p", version_hash="v", inputs={}, tags=["ok", "two words"]))


async def test_payloads_of_an_encrypted_store_are_not_indexed(
    database_url: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEGATO_TEST_SEARCH_KEK", new_key_text())
    async with RunStore(database_url, clock=clock, encryption_key="env:LEGATO_TEST_SEARCH_KEK") as store:
        p = f"sealed-{uuid.uuid4().hex[:8]}"
        record, _ = await store.create_run(NewRun(pipeline=p, version_hash="v", inputs={"text": "Zanzibar"}, owner="w"))
        await store.finish_run(record.id, "w", status="failed", error="RateLimited: slow down", outputs=None)
        assert await store.list_runs(RunFilter(pipeline=p, text="zanzibar")) == []
        assert [r.id for r in await store.list_runs(RunFilter(pipeline=p, text="slow down"))] == [record.id]
        assert (await store.get_run(record.id)).inputs == {"text": "Zanzibar"}
