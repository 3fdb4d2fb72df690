"""Runs API: start (with Idempotency-Key), list, show, follow events over SSE, cancel."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from typing import Any

import httpx
import pytest

from .conftest import Running


@pytest.fixture(scope="module")
def writer(gateway: Running) -> str:
    return gateway.create_key(["runs:read", "runs:write"])


def wait_for(client: httpx.Client, run_id: str, statuses: set[str]) -> dict[str, Any]:
    """Poll until the run reaches one of ``statuses`` (bounded: fails after 60 s)."""
    deadline = time.monotonic() + 60
    while True:
        run = client.get(f"/v1/runs/{run_id}").json()
        if run["status"] in statuses:
            return dict(run)
        assert time.monotonic() < deadline, f"run stuck in {run['status']}"
        time.sleep(0.05)


def read_sse(response: httpx.Response) -> list[tuple[str, dict[str, Any], str | None]]:
    events, name, data, eid = [], None, None, None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = json.loads(line[6:])
        elif line.startswith("id: "):
            eid = line[4:]
        elif line == "" and name is not None:
            events.append((name, data or {}, eid))
            name, data, eid = None, None, None
    return events


def test_run_lifecycle(gateway: Running, writer: str) -> None:
    with gateway.client(writer) as c:
        r = c.post("/v1/pipelines/shout/runs", json={"inputs": {"text": "hello"}})
        assert r.status_code == 202, r.text
        run_id = r.json()["id"]
        assert r.headers["location"] == f"/v1/runs/{run_id}"
        run = wait_for(c, run_id, {"succeeded", "failed"})
        assert run["status"] == "succeeded"
        assert run["outputs"] == {"result": "HELLO"}
        assert [s["step"] for s in run["steps"]] == ["upper"]
        assert run_id in [x["id"] for x in c.get("/v1/runs", params={"pipeline": "shout"}).json()["data"]]

        with c.stream("GET", f"/v1/runs/{run_id}/events") as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            events = read_sse(resp)
        names = [e[0] for e in events]
        assert names.index("RunStarted") < names.index("StepFinished")
        assert names[-2:] == ["RunFinished", "end"]
        assert events[-1][1] == {"status": "succeeded"}

        # Replay from a given event id: only what came after it.
        first_id = events[0][2]
        with c.stream("GET", f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": str(first_id)}) as resp:
            replay = read_sse(resp)
        assert [e[0] for e in replay] == names[1:]


def test_events_follow_a_live_run(gateway: Running, writer: str) -> None:
    with gateway.client(writer) as c:
        run_id = c.post("/v1/pipelines/nap/runs", json={"inputs": {"seconds": 0.5}}).json()["id"]
        with c.stream("GET", f"/v1/runs/{run_id}/events") as resp:
            events = read_sse(resp)
        assert [e[0] for e in events][-1] == "end"
        assert events[-1][1]["status"] == "succeeded"


def test_idempotency_key(gateway: Running, writer: str) -> None:
    with gateway.client(writer) as c:
        headers = {"Idempotency-Key": "order-42"}
        first = c.post("/v1/pipelines/shout/runs", json={"inputs": {"text": "a"}}, headers=headers)
        again = c.post("/v1/pipelines/shout/runs", json={"inputs": {"text": "a"}}, headers=headers)
        assert (first.status_code, again.status_code) == (202, 200)
        assert first.json()["id"] == again.json()["id"]
        other = c.post("/v1/pipelines/shout/runs", json={"inputs": {"text": "b"}}, headers=headers)
        assert other.status_code == 409
        assert other.json()["error"]["code"] == "idempotency_conflict"


def test_bad_requests(gateway: Running, writer: str) -> None:
    with gateway.client(writer) as c:
        before = len(c.get("/v1/runs").json()["data"])
        r = c.post("/v1/pipelines/shout/runs", json={"inputs": {"txt": "typo"}})
        assert r.status_code == 400
        assert "txt" in r.json()["error"]["message"]
        assert c.post("/v1/pipelines/nope/runs", json={"inputs": {}}).status_code == 404
        assert c.get("/v1/runs/does-not-exist").status_code == 404
        assert len(c.get("/v1/runs").json()["data"]) == before


def test_cancel(gateway: Running, writer: str) -> None:
    with gateway.client(writer) as c:
        run_id = c.post("/v1/pipelines/nap/runs", json={"inputs": {"seconds": 60}}).json()["id"]
        wait_for(c, run_id, {"running"})
        r = c.post(f"/v1/runs/{run_id}/cancel")
        assert r.status_code == 200
        assert r.json()["cancelled_by"].startswith("API key ")
        final = wait_for(c, run_id, {"cancelled", "failed", "succeeded"})
        assert final["status"] == "cancelled"
        # who and when, once: the gateway executing the run stopped it directly
        assert final["error"] == f"cancelled by {r.json()['cancelled_by']} at " + time.strftime(
            "%Y-%m-%d %H:%M:%S", time.localtime(final["cancel_requested_at"])
        )
        assert c.post(f"/v1/runs/{run_id}/cancel").status_code == 409


def test_runs_belong_to_their_key(gateway: Running, writer: str) -> None:
    other = gateway.create_key(["runs:read", "runs:write"])
    with gateway.client(writer) as c:
        run_id = c.post("/v1/pipelines/shout/runs", json={"inputs": {"text": "mine"}}).json()["id"]
    with gateway.client(other) as c:
        assert c.get(f"/v1/runs/{run_id}").status_code == 404
        assert c.post(f"/v1/runs/{run_id}/cancel").status_code == 404
        assert run_id not in [r["id"] for r in c.get("/v1/runs").json()["data"]]
    with gateway.admin() as c:
        assert c.get(f"/v1/runs/{run_id}").status_code == 200


def test_runs_are_searched_with_the_dashboards_filters_and_only_among_the_keys_own(
    gateway: Running, writer: str
) -> None:
    other = gateway.create_key(["runs:read", "runs:write"])
    word = f"marmalade{time.monotonic_ns()}"
    with gateway.client(writer) as c:
        mine = c.post("/v1/pipelines/shout/runs", json={"inputs": {"text": f"the {word} jar"}, "tags": ["vip", "eu"]})
        assert mine.status_code == 202, mine.text
        run_id = mine.json()["id"]
        assert wait_for(c, run_id, {"succeeded", "failed"})["tags"] == ["vip", "eu"]
        found = c.get("/v1/runs", params={"q": word.upper(), "tags": "eu,vip", "max_duration_s": 60}).json()
        assert [r["id"] for r in found["data"]] == [run_id]
        assert found["next_cursor"] is None
        assert c.get("/v1/runs", params={"q": word, "tags": "vip,nope"}).json()["data"] == []
        assert c.get("/v1/runs", params={"q": word, "min_cost": 5}).json()["data"] == []
        bad = c.get("/v1/runs", params={"tags": "two words"})
        assert bad.status_code == 400
        assert bad.json()["error"]["param"] == "query.tags"
        assert c.get("/v1/runs", params={"since": "2026-13-40"}).status_code == 400
        assert c.post("/v1/pipelines/shout/runs", json={"inputs": {"text": "x"}, "tags": ["a b"]}).status_code == 400
    with gateway.client(other) as c:
        assert c.get("/v1/runs", params={"q": word}).json()["data"] == []  # a word of another key's run
        assert c.get("/v1/runs", params={"q": word, "key": writer[:12]}).json()["data"] == []  # asking for it
    with gateway.admin() as c:
        assert [r["id"] for r in c.get("/v1/runs", params={"q": word}).json()["data"]] == [run_id]
        keys = c.get("/v1/admin/keys").json()["data"]
        owner = next(k for k in keys if writer.startswith(k["prefix"]))
        assert [r["id"] for r in c.get("/v1/runs", params={"key": owner["prefix"]}).json()["data"]][:1] == [run_id]
        assert c.get("/v1/runs", params={"q": word, "key": "another"}).json()["data"] == []


def test_a_listing_pages_with_next_cursor(gateway: Running, writer: str) -> None:
    with gateway.client(writer) as c:
        ids = [
            c.post("/v1/pipelines/shout/runs", json={"inputs": {"text": f"page {i}"}}).json()["id"] for i in range(5)
        ]
        seen: list[str] = []
        params: dict[str, Any] = {"pipeline": "shout", "limit": 2, "sort": "oldest", "q": "page"}
        while True:
            page = c.get("/v1/runs", params=params).json()
            seen += [r["id"] for r in page["data"]]
            if page["next_cursor"] is None:
                break
            params["cursor"] = page["next_cursor"]
        assert [i for i in seen if i in ids] == ids


def test_run_id_prefixes_resolve_within_the_callers_runs(gateway: Running, writer: str) -> None:
    other = gateway.create_key(["runs:read", "runs:write"])
    with gateway.client(other) as c:
        theirs = c.post("/v1/pipelines/shout/runs", json={"inputs": {"text": "theirs"}}).json()["id"]
    with gateway.client(writer) as c:
        mine = [c.post("/v1/pipelines/shout/runs", json={"inputs": {"text": t}}).json()["id"] for t in "abc"]
        visible = [r["id"] for r in c.get("/v1/runs", params={"limit": 500}).json()["data"]]
        for run_id in mine:
            longest = max(len(os.path.commonprefix([run_id, v])) for v in visible if v != run_id)  # noqa: RUF071 (ids, not paths)
            r = c.get(f"/v1/runs/{run_id[: longest + 1]}")
            assert r.status_code == 200, r.text
            assert r.json()["id"] == run_id
        shared = os.path.commonprefix([*mine, theirs])  # noqa: RUF071 (ids, not paths)
        r = c.get(f"/v1/runs/{shared}")
        assert r.status_code == 409
        error = r.json()["error"]
        assert error["code"] == "ambiguous_run_id"
        assert all(run_id in error["message"] for run_id in mine[-1:])
        assert theirs not in error["message"]  # another key's run is never a candidate
        assert c.post(f"/v1/runs/{shared}/cancel").status_code == 409
    with gateway.client(other) as c:
        r = c.get(f"/v1/runs/{shared}")  # the only run of this key with that prefix
        assert r.status_code == 200
        assert r.json()["id"] == theirs


def _counter(exposition: str, name: str, labels: dict[str, str]) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def wait_until_no_run_is_under_way(gateway: Running) -> None:
    """Earlier tests leave runs finishing in the background (any key's): they would
    move the counters between two readings. Bounded: fails after 60 s."""
    path = str(gateway.app.state.settings.database_url).removeprefix("sqlite:///")
    deadline = time.monotonic() + 60
    while True:
        with contextlib.closing(sqlite3.connect(path)) as db:
            (busy,) = db.execute("SELECT count(*) FROM runs WHERE status IN ('pending', 'running')").fetchone()
        if busy == 0:
            return
        assert time.monotonic() < deadline, f"{busy} runs still under way"
        time.sleep(0.05)


def test_runs_through_the_api_feed_the_run_and_step_metrics(gateway: Running, writer: str) -> None:
    run_series = ("legato_runs_total", {"pipeline": "shout", "status": "succeeded"})
    step_series = ("legato_steps_total", {"pipeline": "shout", "step": "upper", "status": "succeeded"})
    wait_until_no_run_is_under_way(gateway)
    with gateway.client(writer) as c:
        before = c.get("/metrics").text
        r = c.post("/v1/pipelines/shout/runs", json={"inputs": {"text": "counted"}})
        assert r.status_code == 202, r.text
        assert wait_for(c, r.json()["id"], {"succeeded", "failed"})["status"] == "succeeded"
        after = c.get("/metrics").text
    assert _counter(after, *run_series) == _counter(before, *run_series) + 1
    assert _counter(after, *step_series) == _counter(before, *step_series) + 1


def test_rerun_from_a_step(gateway: Running, writer: str) -> None:
    other = gateway.create_key(["runs:read", "runs:write"])
    with gateway.client(writer) as c:
        run_id = c.post("/v1/pipelines/shout/runs", json={"inputs": {"text": "first"}}).json()["id"]
        wait_for(c, run_id, {"succeeded"})
        r = c.post(f"/v1/runs/{run_id}/rerun", json={"from": "upper", "inputs": {"text": "second"}})
        assert r.status_code == 202, r.text
        new = r.json()
        assert new["id"] != run_id
        assert (new["rerun_of"], new["rerun_from"]) == (run_id, "upper")
        assert wait_for(c, new["id"], {"succeeded", "failed"})["outputs"] == {"result": "SECOND"}
        unknown = c.post(f"/v1/runs/{run_id}/rerun", json={"from": "uper"})
        assert unknown.status_code == 400
        assert "did you mean 'upper'?" in unknown.json()["error"]["message"]
        assert c.post(f"/v1/runs/{run_id}/rerun", json={"from": "upper", "inputs": {"txt": 1}}).status_code == 400
        assert c.post(f"/v1/runs/{run_id}/rerun", json={}).status_code == 400
    with gateway.client(other) as c:  # another key's run is not found
        assert c.post(f"/v1/runs/{run_id}/rerun", json={"from": "upper"}).status_code == 404


def test_a_run_with_a_queue_waits_for_a_worker(gateway: Running, writer: str) -> None:
    queue = f"api-{os.urandom(4).hex()}"
    with gateway.client(writer) as c:
        r = c.post("/v1/pipelines/shout/runs", json={"inputs": {"text": "later"}, "queue": queue})
        assert r.status_code == 202, r.text
        run = r.json()
        assert (run["status"], run["queue"]) == ("queued", queue)
        time.sleep(0.3)  # the gateway does not execute it: it stays queued for a worker
        assert c.get(f"/v1/runs/{run['id'][:16]}").json()["status"] == "queued"
        assert run["id"] in [x["id"] for x in c.get("/v1/runs", params={"status": "queued"}).json()["data"]]
        metrics = c.get("/metrics").text
        assert f'legato_queue_depth{{queue="{queue}"}} 1.0' in metrics
        assert f'legato_queue_oldest_age_seconds{{queue="{queue}"}}' in metrics
        cancelled = c.post(f"/v1/runs/{run['id']}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"  # a queued run cancelled never starts
        assert f'legato_queue_depth{{queue="{queue}"}}' not in c.get("/metrics").text
        for bad in ("", "x" * 256, 7):
            refused = c.post("/v1/pipelines/shout/runs", json={"inputs": {"text": "x"}, "queue": bad})
            assert refused.status_code == 400, refused.text
            assert refused.json()["error"]["param"] == "queue"
