"""A tolerated step failure in a durable run: recorded as the step's failure, the run succeeds."""

from __future__ import annotations

from legato.engine import MapItemError, Pipeline
from legato.store import DurableRunner, RunStore, StoredStatus, result_from_record


def pipeline() -> Pipeline:
    p = Pipeline("tolerant")

    @p.step(continue_on_error=True, default={"score": 0})
    async def enrich(x: int) -> dict[str, int]:
        raise ConnectionError(f"enrichment service unreachable for {x}")

    @p.step(map="items", map_errors="collect", max_concurrency=2)
    async def invert(items: int) -> float:
        return 1 / items

    @p.step
    async def report(enrich: dict[str, int], invert: list[float | MapItemError]) -> dict[str, object]:
        return {"score": enrich["score"], "bad": [e.index for e in invert if isinstance(e, MapItemError)]}

    return p


async def test_tolerated_failure_is_stored_and_the_run_succeeds(store: RunStore) -> None:
    res = await DurableRunner(store).run(pipeline(), {"x": 3, "items": [1, 0, 2]})
    assert res.ok, res.error
    assert res.outputs["report"] == {"score": 0, "bad": [1]}
    record = await store.get_run(res.run_id)
    assert record.status is StoredStatus.SUCCEEDED
    steps = {s.step: s for s in await store.steps(res.run_id)}
    assert steps["enrich"].status == "failed"
    assert steps["enrich"].error_type == "ConnectionError"
    assert steps["invert"].output[1] == MapItemError(1, "ZeroDivisionError", "division by zero")
    stored = await result_from_record(store, record)
    assert stored.errors == {"enrich": "ConnectionError: enrichment service unreachable for 3"}
