"""Wait steps in durable runs: the run pauses (status waiting, no lease), an answer
checked against the schema resumes it in another runner, timeouts take the default."""

from __future__ import annotations

from typing import Any

import pytest

from legato.engine import Pipeline, RunStatus, StepStatus, wait_for
from legato.errors import InvalidAnswer, StepNotWaiting
from legato.store import (
    DurableRunner,
    RunStore,
    StoredStatus,
    recover_expired_runs,
    respond,
    result_from_record,
    waiting_requests,
)

from .conftest import FakeClock

SCHEMA = {"type": "object", "properties": {"amount": {"type": "number", "maximum": 500}}, "required": ["amount"]}


def refund(calls: list[str]) -> Pipeline:
    p = Pipeline("refund")

    @p.step
    async def order(order_id: str) -> dict[str, Any]:
        calls.append("order")
        return {"id": order_id, "total": 120.0}

    p.add_step(
        wait_for("Refund?", kind="answer", schema=SCHEMA),
        name="decide",
        args={"question": "Refund order ${steps.order.id} of ${steps.order.total}?"},
    )
    p.add_step(wait_for("Approve?", timeout=3600, default=False), name="approve", depends_on=["order"])

    @p.step
    async def notify(order: dict[str, Any]) -> str:  # independent of the waits: runs in the first attempt
        calls.append("notify")
        return f"notified about {order['id']}"

    @p.step
    async def pay(order: dict[str, Any], decide: dict[str, float], approve: bool) -> str:
        calls.append("pay")
        return f"refunded {decide['amount']} of {order['id']}" if approve else "refund rejected"

    return p


async def test_the_run_waits_without_a_lease_and_resumes_elsewhere(store: RunStore) -> None:
    calls: list[str] = []
    first = await DurableRunner(store).run(refund(calls), {"order_id": "A1"})
    assert first.status is RunStatus.WAITING
    assert first.step_status["decide"] is StepStatus.WAITING
    assert first.waiting["decide"]["question"] == "Refund order A1 of 120.0?"
    assert sorted(calls) == ["notify", "order"]
    record = await store.get_run(first.run_id)
    assert record.status is StoredStatus.WAITING
    assert record.lease_owner is None
    assert record.finished_at is None
    requests = await waiting_requests(store, first.run_id)
    assert requests["decide"]["schema"] == SCHEMA
    assert requests["approve"]["kind"] == "approval"
    assert requests["approve"]["expires_at"] == pytest.approx(requests["approve"]["timeout"] + record.updated_at, abs=5)

    with pytest.raises(InvalidAnswer, match=r"the answer to step 'decide' is not valid: 900 is greater than .*amount"):
        await respond(store, first.run_id, "decide", {"amount": 900})
    with pytest.raises(InvalidAnswer, match="'amount' is a required property"):
        await respond(store, first.run_id, "decide", {})
    with pytest.raises(StepNotWaiting, match="steps waiting: approve, decide"):
        await respond(store, first.run_id, "pay", True)
    assert (await store.get_run(first.run_id)).status is StoredStatus.WAITING  # nothing written

    # Another process answers one step: the run resumes and waits again on the other.
    second = await DurableRunner(store).respond(refund(calls), first.run_id, "decide", {"amount": 100}, by="alice")
    assert second.status is RunStatus.WAITING
    assert set(second.waiting) == {"approve"}
    with pytest.raises(StepNotWaiting, match="is not waiting"):
        await respond(store, first.run_id, "decide", {"amount": 50})
    with pytest.raises(InvalidAnswer, match="'yes' is not of type 'boolean'"):
        await respond(store, first.run_id, "approve", "yes")

    third = await DurableRunner(store).respond(refund(calls), first.run_id, "approve", True, by="bob")
    assert third.ok, third.error
    assert third.outputs["pay"] == "refunded 100 of A1"
    assert sorted(calls) == ["notify", "order", "pay"]  # nothing ran twice
    stored = await result_from_record(store, await store.get_run(first.run_id))
    assert stored.status is RunStatus.SUCCEEDED
    assert stored.waiting == {}
    events = [e.type for e in await store.events(first.run_id)]
    assert events.count("StepAnswered") == 2
    with pytest.raises(StepNotWaiting, match="the run is succeeded"):
        await respond(store, first.run_id, "approve", False)


async def test_a_timed_out_wait_takes_its_default_on_recovery(store: RunStore, clock: FakeClock) -> None:
    calls: list[str] = []
    first = await DurableRunner(store).run(refund(calls), {"order_id": "B2"})
    await respond(store, first.run_id, "decide", {"amount": 10})
    resumed = await DurableRunner(store).resume(refund(calls), first.run_id)
    assert set(resumed.waiting) == {"approve"}
    # (on PostgreSQL the store is shared with other tests: only this run's outcomes count)
    early = await recover_expired_runs(store, {"refund": refund(calls)}.get)
    assert [o for o in early if o.run_id == first.run_id] == []  # not due yet
    clock.advance(3601)
    outcomes = [o for o in await recover_expired_runs(store, {"refund": refund(calls)}.get) if o.run_id == first.run_id]
    assert len(outcomes) == 1
    result = outcomes[0].result
    assert result is not None
    assert result.outputs["pay"] == "refund rejected"
    steps = [s for s in await store.steps(first.run_id) if s.step == "approve"]
    assert steps[-1].meta["answered_by"] == "timeout"


async def test_a_waiting_run_is_cancelled_at_once_and_takes_no_answer(store: RunStore) -> None:
    calls: list[str] = []
    first = await DurableRunner(store).run(refund(calls), {"order_id": "C3"})
    assert first.status is RunStatus.WAITING
    cancelled = await store.request_cancel(first.run_id, by="operator")
    assert cancelled.status is StoredStatus.CANCELLED  # nobody holds a waiting run: nobody else would stop it
    assert cancelled.cancelled_by == "operator"
    with pytest.raises(StepNotWaiting, match="the run is cancelled"):
        await respond(store, first.run_id, "decide", {"amount": 10})
    assert (await store.get_run(first.run_id)).status is StoredStatus.CANCELLED


def test_wait_options_are_checked() -> None:
    with pytest.raises(ValueError, match="a timeout needs a default"):
        wait_for("?", timeout=5)
    with pytest.raises(ValueError, match="a schema is for kind='answer'"):
        wait_for("?", schema={"type": "string"})
    with pytest.raises(ValueError, match="invalid answer schema"):
        wait_for("?", kind="answer", schema={"type": "nope"})


YAML = """
name: approvals
inputs:
  amount: {type: number}
steps:
  approve:
    wait:
      kind: approval
      question: Refund ${inputs.amount}?
      timeout: 60
      default: false
  pay:
    uses: ./steps.py:pay
    when: steps.approve
"""


async def test_a_yaml_wait_step_pauses_a_plain_run(tmp_path: Any) -> None:
    from legato.errors import SpecError
    from legato.spec import load_pipeline

    (tmp_path / "steps.py").write_text("def pay(amount):\n    return f'paid {amount}'\n")
    (tmp_path / "p.yaml").write_text(YAML)
    result = await load_pipeline(tmp_path / "p.yaml").run({"amount": 12.5})
    assert result.status is RunStatus.WAITING
    assert result.waiting == {
        "approve": {"kind": "approval", "question": "Refund 12.5?", "timeout": 60, "default": False}
    }
    approved = await load_pipeline(tmp_path / "p.yaml").run({"amount": 12.5}, completed={"approve": True})
    assert approved.outputs["pay"] == "paid 12.5"
    (tmp_path / "p.yaml").write_text(
        YAML.replace("      default: false\n", "").replace("kind: approval", "kind: aproval")
    )
    with pytest.raises(SpecError) as info:
        load_pipeline(tmp_path / "p.yaml")
    assert "'kind' must be approval or answer, got 'aproval'" in str(info.value)
