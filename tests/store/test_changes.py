"""Live views learn that runs changed: PostgreSQL NOTIFY from any store on the database,
SQLite ``data_version``; heartbeats and checkpoints stay silent."""

from __future__ import annotations

from legato.store import NewRun, RunStore, StepRecord


async def test_a_change_made_elsewhere_wakes_the_waiter_and_a_heartbeat_does_not(database_url: str) -> None:
    async with RunStore(database_url) as viewer_side, RunStore(database_url) as worker_side:
        changes = viewer_side.run_changes()
        assert changes.kind == ("notify" if "postgresql" in database_url else "data_version")
        seen = await changes.wait(changes.count, 0.05)  # settled: the listener or the first probe

        record, _ = await worker_side.create_run(NewRun(pipeline="p", version_hash="v", inputs={}, owner="w"))
        quiet = await changes.wait(seen, 10)
        assert quiet > seen  # a new run
        await worker_side.heartbeat(record.id, "w")
        await worker_side.checkpoint(record.id, "w", attempts=[StepRecord(record.id, "a", "succeeded", output=1)])
        if changes.kind == "notify":  # SQLite sees every commit; PostgreSQL only what a list shows
            assert await changes.wait(quiet, 0.5) == quiet

        quiet = await changes.wait(quiet, 0.05)  # SQLite: the heartbeat's commit, counted
        await worker_side.finish_run(record.id, "w", status="succeeded", outputs={"a": 1})
        assert await changes.wait(quiet, 10) > quiet
