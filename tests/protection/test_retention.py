"""Retention on a clock-injected store, metadata-only pipelines, and erasure by subject
across runs, the journal and response caches (SQLite and PostgreSQL stores; SQLite and
Redis caches)."""

from __future__ import annotations

import uuid

from legato.cache import CacheBackend, ResponseCache
from legato.engine import Pipeline
from legato.providers import ChatRequest, Message, OpenAIModel
from legato.store import (
    DurableRunner,
    Journal,
    NewRun,
    PayloadState,
    RetentionConfig,
    RunStore,
    StepRecord,
    apply_retention,
    erase_subject,
    pipeline_version,
)
from legato.testing import FakeProvider, Reply
from protection.conftest import cache_bytes, store_bytes

DAY = 86_400.0
OWNER = "test:1:x"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _pipeline(name: str, calls: list[str] | None = None) -> Pipeline:
    p = Pipeline(name)

    @p.step
    async def a(doc: str) -> str:
        if calls is not None:
            calls.append("a")
        return f"{doc} read"

    @p.step
    async def b(a: str) -> str:
        return a.upper()

    return p


RULES = RetentionConfig.model_validate(
    {
        "default": {"keep_runs_days": 30, "keep_payloads_days": 10},
        "pipelines": {"short": {"keep_payloads_days": 1}, "quiet": {"payloads": "metadata"}},
    }
)


async def test_runs_are_kept_then_reduced_to_metadata_then_deleted(store_url: str) -> None:
    clock = Clock()
    long_canary, short_canary = f"canary-{uuid.uuid4().hex}", f"canary-{uuid.uuid4().hex}"
    async with RunStore(store_url, clock=clock, retention=RULES) as store:
        kept = await DurableRunner(store).run(_pipeline("long"), {"doc": long_canary})
        short = await DurableRunner(store).run(_pipeline("short"), {"doc": short_canary})
        clock.now += 2 * DAY
        preview = await apply_retention(store, RULES, dry_run=True)
        assert (preview.deleted, preview.expired, preview.dry_run) == (0, 1, True)
        assert (await store.get_run(short.run_id)).payloads is None  # a dry run changes nothing
        report = await apply_retention(store, RULES)
        assert (report.deleted, report.expired) == (0, 1)
        record = await store.get_run(short.run_id)
        assert (record.payloads, record.inputs, record.outputs) == (PayloadState.EXPIRED, {}, None)
        steps = await store.steps(short.run_id)
        assert [(s.step, s.status, s.output) for s in steps] == [("a", "succeeded", None), ("b", "succeeded", None)]
        assert all(s.duration_s is not None for s in steps)  # metadata stays
        assert (await store.get_run(kept.run_id)).inputs == {"doc": long_canary}
        raw = store_bytes(store_url)
        assert short_canary.encode() not in raw
        assert long_canary.encode() in raw
        clock.now += 9 * DAY
        assert (await apply_retention(store, RULES)).expired == 1
        assert (await store.get_run(kept.run_id)).payloads == PayloadState.EXPIRED
        clock.now += 20 * DAY
        assert (await apply_retention(store, RULES)).deleted == 2
        assert await store.list_runs() == []


async def test_a_metadata_only_pipeline_keeps_no_payloads_and_resumes_from_the_start(store_url: str) -> None:
    canary = f"canary-{uuid.uuid4().hex}"
    calls: list[str] = []
    quiet = _pipeline("quiet", calls)
    async with RunStore(store_url, retention=RULES) as store:
        done = await DurableRunner(store).run(quiet, {"doc": canary})
        assert done.ok
        assert done.result["b"] == f"{canary} read".upper()  # the caller gets its answer
        record = await store.get_run(done.run_id)
        assert (record.payloads, record.inputs, record.outputs, record.status) == (
            PayloadState.METADATA,
            {},
            None,
            "succeeded",
        )
        assert [s.output for s in await store.steps(done.run_id)] == [None, None]
        # an interrupted run of it (its worker died after step a) re-runs a on resume
        run, _ = await store.create_run(
            NewRun(
                pipeline="quiet",
                version_hash=pipeline_version(quiet),
                inputs={"doc": canary},
                owner=OWNER,
                lease_ttl=30,
                payloads=PayloadState.METADATA,
            )
        )
        await store.checkpoint(run.id, OWNER, attempts=[StepRecord(run.id, "a", "succeeded", attempt=1)])
        calls.clear()
        resumed = await DurableRunner(store).resume(quiet, run.id, force=True)
        assert resumed.ok
        assert calls == ["a"]
    assert canary.encode() not in store_bytes(store_url)


async def test_erasure_by_subject_across_runs_journal_and_cache(
    store_url: str, cache_backend: CacheBackend, fake_provider: FakeProvider
) -> None:
    ann, bob = f"ann-{uuid.uuid4().hex}", f"bob-{uuid.uuid4().hex}"
    rules = RetentionConfig.model_validate({"pipelines": {"support": {"subject": "customer"}}})
    p = Pipeline("support")

    @p.step
    async def reply(customer: str, ticket: str) -> str:
        return f"answer to {ticket}"

    inner = OpenAIModel("gpt-4o-mini", base_url=fake_provider.openai_base_url, api_key="sk")
    cache = ResponseCache(inner, cache_backend)
    fake_provider.script(Reply(text=f"model answer for {ann}"), Reply(text=f"model answer for {bob}"))
    for who in (ann, bob):
        ask = ChatRequest(messages=[Message(role="user", content=f"help {who}")], metadata={"subject": who})
        await cache.chat(ask)
    async with RunStore(store_url, retention=rules) as store:
        runner = DurableRunner(store, reflect=None)
        ann_runs = [await runner.run(p, {"customer": ann, "ticket": f"{ann} ticket {i}"}) for i in range(2)]
        api_run = await runner.run(p, {"customer": "someone", "ticket": f"{ann} by api"}, subject=ann)
        bob_run = await runner.run(p, {"customer": bob, "ticket": f"{bob} ticket"})
        await Journal(store).add("about ann", f"{ann} prefers e-mail", run_id=ann_runs[0].run_id)
        report = await erase_subject(store, ann, caches=[cache_backend])
        assert (report.runs, report.journal_entries, report.cache_entries) == (3, 1, 1)
        for run in [*ann_runs, api_run]:
            record = await store.get_run(run.run_id)
            assert (record.payloads, record.inputs, record.status) == (PayloadState.ERASED, {}, "succeeded")
        assert (await store.get_run(bob_run.run_id)).inputs["customer"] == bob
        raw = store_bytes(store_url)
        assert ann.encode() not in raw
        assert ann.split("-")[1].encode() not in raw  # nor the word in the search indexes
        assert bob.encode() in raw
        assert (await erase_subject(store, "nobody")).runs == 0
    cached = await cache_bytes(cache_backend)
    assert ann.encode() not in cached
    assert bob.encode() in cached
    await inner.aclose()
