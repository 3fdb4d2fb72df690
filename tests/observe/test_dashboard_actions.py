"""The Start form: fields generated from a pipeline's inputs and read back as typed inputs."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx
import pytest
from fastapi import FastAPI

from legato import Pipeline
from legato.engine import InputDecl, wait_for
from legato.server.ui import DashboardSources, mount_dashboard
from legato.server.ui._actions import FormError, form_fields, parse_inputs
from legato.store import DurableRunner, NewRun, RunStore

ADMIN = "admin-key-for-actions"
AUTH = {"authorization": f"Bearer {ADMIN}"}


def pipeline() -> Pipeline:
    decl = InputDecl("extra", int, required=False, default=3, type_name="integer")
    inputs = {"text": str, "count": int, "ratio": float, "loud": bool, "tags": list, "extra": decl}
    p = Pipeline("typed", inputs=inputs)

    @p.step
    async def work(text: str, count: int, ratio: float, loud: bool, tags: list, extra: int) -> str:
        return text

    return p


def test_each_input_gets_a_field_of_its_type() -> None:
    fields = {f.name: f for f in form_fields(pipeline().inputs)}
    kinds = {n: f.kind for n, f in fields.items()}
    assert kinds == {"text": "text", "count": "number", "ratio": "number", "loud": "checkbox", "tags": "json",
                     "extra": "number"}  # fmt: skip
    assert fields["extra"].value == "3"
    assert not fields["extra"].required


def test_the_form_is_read_back_as_typed_inputs() -> None:
    fields = form_fields(pipeline().inputs)
    form = {"input.text": ["héllo"], "input.count": ["7"], "input.ratio": ["0.5"], "input.loud": ["on"],
            "input.tags": ['["a", "b"]'], "input.extra": [""]}  # fmt: skip
    assert parse_inputs(fields, form) == {"text": "héllo", "count": 7, "ratio": 0.5, "loud": True, "tags": ["a", "b"]}
    assert parse_inputs(fields, {**form, "input.loud": []})["loud"] is False


@pytest.mark.parametrize(
    ("field", "raw", "message"),
    [("count", "seven", "count: 'seven' is not a"), ("tags", "[1,", "tags: the value is not valid JSON")],
)
def test_a_field_that_cannot_be_read_is_named(field: str, raw: str, message: str) -> None:
    fields = form_fields(pipeline().inputs)
    form = {
        "input.text": ["x"],
        "input.count": ["1"],
        "input.ratio": ["1"],
        "input.tags": ["[]"],
        f"input.{field}": [raw],
    }
    with pytest.raises(FormError, match=message.replace("[", r"\[")):
        parse_inputs(fields, form)


def gate() -> Pipeline:
    p = Pipeline("gate")

    @p.step
    async def total(amount: float) -> float:
        return amount * 1.2

    p.add_step(wait_for("Refund?"), name="approve", args={"question": "Refund ${steps.total} EUR?"})
    schema = {"type": "object", "properties": {"text": {"type": "string", "minLength": 3}}, "required": ["text"]}
    p.add_step(wait_for("Why?", kind="answer", schema=schema), name="reason", depends_on=["approve"])
    return p


async def test_a_waiting_step_is_answered_from_its_run_page(tmp_path: Path) -> None:
    from legato.server._runs import RunsService

    store = await RunStore(f"sqlite+aiosqlite:///{tmp_path / 'wait.db'}").open()
    try:
        p = gate()
        result = await DurableRunner(store, reflect=None).run(p, {"amount": 10.0})
        assert result.status == "waiting"
        service = RunsService(store, {"gate": p})  # the runs API's respond, without a task group to resume in
        app = FastAPI()
        mount_dashboard(app, DashboardSources(store=store, admin_key=ADMIN, respond=service.respond))
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 4321))
        async with httpx.AsyncClient(transport=transport, base_url="http://d", headers=AUTH) as c:
            page = (await c.get(f"/ui/runs/{result.run_id}")).text
            assert "Waiting for an approval" in page
            assert "Refund 12.0 EUR?" in page
            url = f"/ui/runs/{result.run_id}/steps/approve/respond"
            unconfirmed = await c.post(url, data={"approved": "true"})
            assert unconfirmed.status_code == 400
            assert "tick the confirmation" in unconfirmed.text
            wrong = await c.post(
                f"/ui/runs/{result.run_id}/steps/reason/respond", data={"value": "{}", "confirm": "yes"}
            )
            assert wrong.status_code == 409  # not waiting yet: refused like the API refuses it
            done = await c.post(url, data={"approved": "true", "confirm": "yes"})
            assert done.status_code == 303
            assert done.headers["location"] == f"/ui/runs/{result.run_id}#step-approve"
            foreign = await c.post(url, data={"approved": "true", "confirm": "yes"}, headers={"origin": "https://evil"})
            assert foreign.status_code == 403
        steps = {s.step: s for s in await store.steps(result.run_id)}
        assert steps["approve"].status == "succeeded"
        assert steps["approve"].output is True
    finally:
        await store.aclose()


async def test_retry_a_failed_run_from_its_failed_step(tmp_path: Path) -> None:
    from legato.server._runs import RunsService

    calls = {"fetch": 0, "check": 0}
    p = Pipeline("retryable")

    @p.step
    async def fetch(x: int) -> int:
        calls["fetch"] += 1
        return x + 1

    @p.step
    async def check(fetch: int) -> int:
        calls["check"] += 1
        if calls["check"] == 1:
            raise ConnectionError("upstream was down")
        return fetch * 2

    store = await RunStore(f"sqlite+aiosqlite:///{tmp_path / 'rerun.db'}").open()
    try:
        failed = await DurableRunner(store, reflect=None).run(p, {"x": 1})
        assert failed.status == "failed"
        service = RunsService(store, {"retryable": p})
        app = FastAPI()
        mount_dashboard(app, DashboardSources(store=store, admin_key=ADMIN, rerun=service.rerun))
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 4321))
        async with anyio.create_task_group() as tg:
            await tg.start(service.serve)
            async with httpx.AsyncClient(transport=transport, base_url="http://d", headers=AUTH) as c:
                page = (await c.get(f"/ui/runs/{failed.run_id}")).text
                assert "Retry from check" in page
                assert "Re-run from fetch" in page
                url = f"/ui/runs/{failed.run_id}/rerun"
                assert (await c.post(url, data={"from_step": "check"})).status_code == 400  # not confirmed
                unknown = await c.post(url, data={"from_step": "nope", "confirm": "yes"})
                assert unknown.status_code == 400
                assert "nope" in unknown.text
                retried = await c.post(url, data={"from_step": "check", "confirm": "yes"})
                assert retried.status_code == 303
                new_id = retried.headers["location"].rsplit("/", 1)[1]
            with anyio.fail_after(30):
                while (await store.get_run(new_id)).status not in ("succeeded", "failed"):
                    await anyio.sleep(0.02)
            tg.cancel_scope.cancel()
        new = await store.get_run(new_id)
        assert new.status == "succeeded"
        assert new.outputs == {"fetch": 2, "check": 4}
        assert calls == {"fetch": 1, "check": 2}  # fetch's stored output was reused
    finally:
        await store.aclose()


async def test_an_interrupted_run_is_resumed_from_its_page(tmp_path: Path) -> None:
    from legato.server._runs import RunsService
    from legato.store import StepRecord, pipeline_version

    calls = {"fetch": 0, "check": 0}
    p = Pipeline("resumable")

    @p.step
    async def fetch(x: int) -> int:
        calls["fetch"] += 1
        return x + 1

    @p.step
    async def check(fetch: int) -> int:
        calls["check"] += 1
        return fetch * 2

    now = [1_800_000_000.0]
    store = await RunStore(f"sqlite+aiosqlite:///{tmp_path / 'resume.db'}", clock=lambda: now[0]).open()
    try:  # a worker on another host recorded fetch, then went silent: its lease runs out
        run, _ = await store.create_run(NewRun(pipeline="resumable", version_hash=pipeline_version(p), inputs={"x": 1},
                                        owner="elsewhere:1:n", lease_ttl=30))  # fmt: skip
        await store.checkpoint(run.id, "elsewhere:1:n", attempts=[StepRecord(run.id, "fetch", "succeeded", output=2)],
                               lease_ttl=30)  # fmt: skip
        service = RunsService(store, {"resumable": p})
        app = FastAPI()
        mount_dashboard(app, DashboardSources(store=store, admin_key=ADMIN, resume=service.resume))
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 4321))
        async with anyio.create_task_group() as tg:
            await tg.start(service.serve)
            async with httpx.AsyncClient(transport=transport, base_url="http://d", headers=AUTH) as c:
                url = f"/ui/runs/{run.id}/resume"
                assert "resume-run" not in (await c.get(f"/ui/runs/{run.id}")).text  # its lease is still live
                early = await c.post(url, data={"confirm": "yes"})
                assert early.status_code == 409
                assert "only an interrupted run is resumed" in early.text
                now[0] += 31
                assert "resume-run" in (await c.get(f"/ui/runs/{run.id}")).text
                assert (await c.post(url, data={})).status_code == 400  # not confirmed
                foreign = await c.post(url, data={"confirm": "yes"}, headers={"origin": "https://evil"})
                assert foreign.status_code == 403
                resumed = await c.post(url, data={"confirm": "yes"})
                assert resumed.status_code == 303
                assert resumed.headers["location"] == f"/ui/runs/{run.id}"
            with anyio.fail_after(30):
                while (await store.get_run(run.id)).status not in ("succeeded", "failed"):
                    await anyio.sleep(0.02)
            tg.cancel_scope.cancel()
        done = await store.get_run(run.id)
        assert done.status == "succeeded"
        assert done.outputs == {"fetch": 2, "check": 4}
        assert calls == {"fetch": 0, "check": 1}  # the checkpointed step did not run again
    finally:
        await store.aclose()


async def test_an_interrupted_run_of_a_queue_goes_back_on_its_queue(tmp_path: Path) -> None:
    from legato.server._runs import RunsService
    from legato.store import pipeline_version

    p = Pipeline("queued")

    @p.step
    async def work(x: int) -> int:
        return x

    now = [1_800_000_000.0]
    store = await RunStore(f"sqlite+aiosqlite:///{tmp_path / 'requeue.db'}", clock=lambda: now[0]).open()
    try:
        run, _ = await store.create_run(NewRun(pipeline="queued", version_hash=pipeline_version(p), inputs={"x": 1},
                                        owner="elsewhere:1:n", lease_ttl=30, queue="gpu"))  # fmt: skip
        now[0] += 31
        service = RunsService(store, {"queued": p}, execute=False)
        async with anyio.create_task_group() as tg:
            await tg.start(service.serve)
            resumed = await service.resume(run)
            tg.cancel_scope.cancel()
        assert resumed.status == "queued"  # for the next worker of "gpu", not executed by the gateway
        assert resumed.queue == "gpu"
        assert resumed.lease_owner is None
    finally:
        await store.aclose()
