"""The ownership rule in the store, on SQLite and PostgreSQL: runs (ids and prefixes)
and journal entries (recent, text search, get) are visible to their tenant and to
callers that see all, and another tenant's record is "not found" like a missing one."""

from __future__ import annotations

import pytest

from legato.errors import RunNotFound, StoreError
from legato.store import LOCAL, Journal, NewRun, Principal, RunStore, visible_run

A = Principal("key-a")
B = Principal("key-b")
ADMIN = Principal("key-admin", sees_all=True)


async def _run(store: RunStore, tenant: str, run_id: str) -> str:
    record, _ = await store.create_run(NewRun(pipeline="p", version_hash="v", inputs={}, tenant=tenant, run_id=run_id))
    return record.id


async def test_runs_are_visible_to_their_tenant_only(store: RunStore) -> None:
    run_a = await _run(store, "key-a", "run-aaaa-0001")
    for viewer in (A, ADMIN, LOCAL):
        assert (await visible_run(store, viewer, run_a)).id == run_a
        assert (await visible_run(store, viewer, "run-aaaa")).id == run_a  # a unique prefix
    with pytest.raises(RunNotFound) as other:
        await visible_run(store, B, run_a)
    with pytest.raises(RunNotFound) as missing:
        await visible_run(store, B, "run-zzzz-0001")
    assert str(other.value).replace(run_a, "ID") == str(missing.value).replace("run-zzzz-0001", "ID")


async def test_a_prefix_is_resolved_within_the_callers_runs(store: RunStore) -> None:
    await _run(store, "key-a", "shared-prefix-a")
    run_b = await _run(store, "key-b", "shared-prefix-b")
    assert (await visible_run(store, B, "shared-prefix")).id == run_b  # A's run does not make it ambiguous
    with pytest.raises(RunNotFound):
        await visible_run(store, ADMIN, "shared-prefix")  # two runs match for a caller who sees both


async def test_journal_entries_are_visible_to_their_owner_only(store: RunStore) -> None:
    journal = Journal(store)
    mine = await journal.add("Gizmo timeouts on upload", "raise the gizmo timeout", tags=["gizmo"], owner="key-a")
    theirs = await journal.add("Gizmo quota notes", "the gizmo quota resets hourly", owner="key-b")
    ours = {mine.id, theirs.id}  # the PostgreSQL database is shared with other tests' entries
    for viewer, expected in ((A, {mine.id}), (B, {theirs.id}), (ADMIN, ours)):
        assert {e.id for e in await journal.recent(50, viewer=viewer)} & ours == expected
        assert {e.id for e in await journal.search("gizmo", limit=50, viewer=viewer)} & ours == expected
    assert (await journal.get(mine.id, viewer=A)).title == mine.title
    with pytest.raises(StoreError, match=f"no journal entry with id {mine.id}"):
        await journal.get(mine.id, viewer=B)
    assert {e.id for e in await journal.recent(50)} & ours == ours  # the local owner sees all
