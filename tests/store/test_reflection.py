"""Automatic reflection entries written from a run's stored data."""

from __future__ import annotations

from legato.store import EventRecord, Journal, NewRun, RunStore, StepRecord, reflect_on_run


async def test_over_estimate_fallbacks_and_slowest_step_are_reported(sqlite_store: RunStore) -> None:
    store = sqlite_store
    record, _ = await store.create_run(
        NewRun(pipeline="answers", version_hash="v", inputs={}, owner="w", estimated_cost=0.01)
    )
    await store.checkpoint(
        record.id,
        "w",
        attempts=[
            StepRecord(record.id, "retrieve", "succeeded", output=1, duration_s=0.2),
            StepRecord(
                record.id, "answer", "succeeded", output=2, duration_s=1.5,
                meta={"cost": 0.05, "by_model": {"openai/gpt-4o": 0.01, "anthropic/claude-haiku": 0.04}},
            ),
        ],
        new_events=[EventRecord(record.id, "StepRetried", 1.0, "answer", {"attempt": 1, "error_type": "RateLimited"})],
    )  # fmt: skip
    await store.finish_run(record.id, "w", status="succeeded", cost=0.05)
    entry = await reflect_on_run(store, await store.get_run(record.id))
    assert entry is not None
    assert entry.author == "auto"
    assert entry.run_id == record.id
    assert entry.title == "answers: run succeeded with retries of answer (RateLimited), fallbacks, over cost estimate"
    assert entry.body.startswith(f"Seen 1 time; latest in run {record.id}.")
    assert {"auto", "retries", "ratelimited", "fallback", "over-estimate"} <= set(entry.tags)
    assert "Cost: $0.050000 vs estimate $0.010000 (+400%)" in entry.body
    assert "Fallbacks: answer: answered by anthropic/claude-haiku, openai/gpt-4o" in entry.body
    assert "Slowest step: 'answer' (1.500s" in entry.body


async def test_a_recurring_cause_is_one_entry_with_a_count(store: RunStore) -> None:
    ids = []
    for _ in range(3):
        record, _ = await store.create_run(NewRun(pipeline="flaky", version_hash="v", inputs={}, owner="w"))
        retried = EventRecord(record.id, "StepRetried", 1.0, "score", {"attempt": 1, "error_type": "ConnectionError"})
        await store.checkpoint(
            record.id, "w", attempts=[StepRecord(record.id, "score", "succeeded", output=1, attempt=2, duration_s=0.1)],
            new_events=[retried],
        )  # fmt: skip
        await store.finish_run(record.id, "w", status="succeeded")
        entry = await reflect_on_run(store, await store.get_run(record.id))
        assert entry is not None
        ids.append(entry.id)
    assert len(set(ids)) == 1
    [only] = await Journal(store).recent(10, pipeline="flaky")
    assert only.title == "flaky: run succeeded with retries of score (ConnectionError)"
    assert only.body.startswith(f"Seen 3 times; latest in run {record.id}.")
    assert only.run_id == record.id
    assert [e.id for e in await Journal(store).search("ConnectionError", pipeline="flaky")] == [only.id]


async def test_uneventful_runs_write_nothing(sqlite_store: RunStore) -> None:
    record, _ = await sqlite_store.create_run(NewRun(pipeline="calm", version_hash="v", inputs={}, owner="w"))
    await sqlite_store.finish_run(record.id, "w", status="succeeded")
    assert await reflect_on_run(sqlite_store, await sqlite_store.get_run(record.id)) is None


async def test_dead_lettered_runs_say_why(sqlite_store: RunStore) -> None:
    record, _ = await sqlite_store.create_run(NewRun(pipeline="poison", version_hash="v", inputs={}, owner="w"))
    dead = await sqlite_store.dead_letter(record.id, "its worker died 4 times")
    entry = await reflect_on_run(sqlite_store, dead)
    assert entry is not None
    assert entry.title == "poison: run dead-lettered"
    assert "Dead-lettered: its worker died 4 times" in entry.body
