"""The dashboard's pages and live endpoint against a real SQLite run store."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest
from fastapi import FastAPI

from legato import Pipeline
from legato.server.ui import DashboardSources, LiveEvents, mount_dashboard, pipeline_graph
from legato.store import DurableRunner, Journal, RunStore

SECRET = "sk-proj-dashboardcanary0123456789"
ADMIN = "admin-key-for-tests"
AUTH = {"authorization": f"Bearer {ADMIN}"}


def diamond() -> Pipeline:
    p = Pipeline("diamond", failure_policy="continue")  # b always finishes; d is skipped

    @p.step
    async def a(x: int) -> int:
        return x + 1

    @p.step
    async def b(a: int) -> int:
        return a * 2

    @p.step
    async def c(a: int) -> int:
        await anyio.sleep(0.01)
        raise ValueError(f"upstream refused key {SECRET}")

    @p.step
    async def d(b: int, c: int) -> int:
        return b + c

    return p


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[RunStore]:
    s = await RunStore(f"sqlite+aiosqlite:///{tmp_path / 'ui.db'}").open()
    yield s
    await s.aclose()


@pytest.fixture
async def runs(store: RunStore) -> dict[str, str]:
    p = diamond()
    runner = DurableRunner(store, reflect=None)
    failed = await runner.run(p, {"x": 1})
    ok = await runner.run(_ok_pipeline(), {"x": 2})
    return {"failed": failed.run_id, "ok": ok.run_id}


def _ok_pipeline() -> Pipeline:
    p = Pipeline("single")

    @p.step
    async def only(x: int) -> int:
        return x * 10

    return p


def client(app: FastAPI, host: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(host, 4321))
    return httpx.AsyncClient(transport=transport, base_url="http://dash")


def app_for(store: RunStore, **kw: object) -> FastAPI:
    app = FastAPI()
    graphs = {"diamond": pipeline_graph(diamond()), "single": pipeline_graph(_ok_pipeline())}
    sources = DashboardSources(store=store, admin_key=ADMIN, graphs=graphs.get, poll_s=0.01, **kw)  # type: ignore[arg-type]
    mount_dashboard(app, sources)
    return app


async def test_pages_need_the_admin_key(store: RunStore, runs: dict[str, str]) -> None:
    async with client(app_for(store)) as c:
        r = await c.get("/ui/runs/" + runs["failed"])
        assert r.status_code == 303
        assert r.headers["location"] == f"/ui/login?next=/ui/runs/{runs['failed']}"
        assert (await c.get("/ui/live/runs")).status_code == 401
        bad = await c.post("/ui/login", data={"key": "wrong", "next": "/ui/"})
        assert bad.status_code == 401
        assert "cannot sign in" in bad.text
        good = await c.post("/ui/login", data={"key": ADMIN, "next": f"/ui/runs/{runs['ok']}"})
        assert good.status_code == 303
        assert good.headers["location"] == f"/ui/runs/{runs['ok']}"
        cookie = good.cookies.get("legato_dashboard")
        assert cookie
        assert ADMIN not in cookie
        assert (await c.get("/ui/")).status_code == 200  # the cookie is now sent
        await c.post("/ui/logout")
        assert (await c.get("/ui/")).status_code == 303


async def test_login_never_redirects_off_site(store: RunStore) -> None:
    async with client(app_for(store)) as c:
        for target in ("//evil.example/", "https://evil.example/ui/", "/other"):
            r = await c.post("/ui/login", data={"key": ADMIN, "next": target})
            assert r.headers["location"] == "/ui/"


async def test_without_an_admin_key_only_loopback_clients_get_in(store: RunStore, runs: dict[str, str]) -> None:
    app = FastAPI()
    mount_dashboard(app, DashboardSources(store=store))
    async with client(app) as local:
        assert (await local.get("/ui/")).status_code == 200
    async with client(app, host="10.1.2.3") as remote:
        r = await remote.get("/ui/")
        assert r.status_code == 403
        assert "answers local clients only" in r.text


async def test_runs_list_filters(store: RunStore, runs: dict[str, str]) -> None:
    async with client(app_for(store)) as c:
        everything = (await c.get("/ui/", headers=AUTH)).text
        assert runs["failed"] in everything
        assert runs["ok"] in everything
        failed = (await c.get("/ui/?status=failed", headers=AUTH)).text
        assert runs["failed"] in failed
        assert runs["ok"] not in failed
        single = (await c.get("/ui/?pipeline=single", headers=AUTH)).text
        assert re.findall(r'data-run="([0-9a-f]+)"', single) == [runs["ok"]]
        prefix = (await c.get(f"/ui/?q={runs['failed'][:16]}", headers=AUTH)).text
        assert re.findall(r'data-run="([0-9a-f]+)"', prefix) == [runs["failed"]]


async def test_run_page_shows_graph_timeline_and_step_details(store: RunStore, runs: dict[str, str]) -> None:
    async with client(app_for(store)) as c:
        html = (await c.get(f"/ui/runs/{runs['failed']}", headers=AUTH)).text
    nodes = dict(re.findall(r'<g class="node s-\w+" data-step="(\w+)" data-status="(\w+)"', html))
    assert nodes == {"a": "succeeded", "b": "succeeded", "c": "failed", "d": "skipped"}
    edges = set(re.findall(r'class="edge" data-from="(\w+)" data-to="(\w+)"', html))
    assert edges == {("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")}
    bars = re.findall(
        r'<rect tabindex="0" class="bar s-\w+" data-step="(\w+)" data-attempt="1" data-status="(\w+)"', html
    )
    assert sorted(bars) == [("a", "succeeded"), ("b", "succeeded"), ("c", "failed")]
    assert "ValueError: upstream refused key [REDACTED]" in html
    assert SECRET not in html
    assert "&#34;steps.a&#34;: 2" in html  # b's and c's inputs


async def test_unknown_run_is_a_404_page(store: RunStore) -> None:
    async with client(app_for(store)) as c:
        r = await c.get("/ui/runs/nope", headers=AUTH)
        assert r.status_code == 404
        assert "Run not found" in r.text
        assert (await c.get("/ui/live/runs/nope", headers=AUTH)).status_code == 404


async def test_live_endpoint_sends_the_run_then_done(store: RunStore, runs: dict[str, str]) -> None:
    async with client(app_for(store)) as c:
        r = await c.get(f"/ui/live/runs/{runs['ok']}", headers=AUTH)
    assert r.headers["content-type"].startswith("text/event-stream")
    events = re.findall(r"^event: (\w+)$", r.text, flags=re.M)
    assert events == ["update", "done"]
    assert '"status":"succeeded"' in r.text
    assert "run-gantt" in r.text


async def test_models_spend_and_journal_pages(store: RunStore, runs: dict[str, str]) -> None:
    journal = Journal(store)
    await journal.add("OpenAI 429 storm", "Retries with backoff fixed it.", tags=["openai", "ratelimit"])
    await journal.add("Slow OCR step", "Batch the pages.", tags=["ocr"])

    def health() -> list[dict[str, object]]:
        return [{"group": "chat", "deployment": "openai#0", "breaker": "open", "in_flight": 2}]

    async def spend(since: str | None) -> list[dict[str, object]]:
        return [
            {"prefix": "lg_abc1234", "name": "ci", "day": "2026-11-24", "model": "gpt-4o-mini", "requests": 3,
             "input_tokens": 30, "output_tokens": 9, "cost": 0.25},
        ]  # fmt: skip

    app = app_for(store, health=health, spend=spend, journal=journal)
    async with client(app) as c:
        models = (await c.get("/ui/models", headers=AUTH)).text
        assert '<span class="badge b-open">open</span>' in models
        assert "openai#0" in models
        spent = (await c.get("/ui/spend?since=2026-01-01", headers=AUTH)).text
        assert "gpt-4o-mini" in spent
        assert "$0.25<" in spent
        found = (await c.get("/ui/journal?q=storm", headers=AUTH)).text
        assert "OpenAI 429 storm" in found
        assert "Slow OCR step" not in found
        recent = (await c.get("/ui/journal", headers=AUTH)).text
        assert "Slow OCR step" in recent


async def test_static_files_only_from_the_static_folder(store: RunStore) -> None:
    async with client(app_for(store)) as c:
        js = await c.get("/ui/static/dashboard.js")
        assert js.status_code == 200
        assert js.headers["content-type"].startswith("text/javascript")
        assert (await c.get("/ui/static/..%2F_app.py")).status_code == 404
        assert (await c.get("/ui/static/missing.css")).status_code == 404


async def test_running_steps_show_while_the_run_is_in_flight(store: RunStore) -> None:
    live = LiveEvents()
    release = anyio.Event()
    p = Pipeline("waiting")

    @p.step
    async def first(x: int) -> int:
        return x

    @p.step
    async def slow(first: int) -> int:
        await release.wait()
        return first + 1

    graphs = {"waiting": pipeline_graph(p)}
    app = FastAPI()
    mount_dashboard(app, DashboardSources(store=store, admin_key=ADMIN, graphs=graphs.get, live=live, poll_s=0.01))

    async def wait_for_slow_to_start() -> str:
        with anyio.fail_after(30):
            while True:
                for run in await store.list_runs(pipeline="waiting"):
                    if any(e["step"] == "slow" for e in live.events(run.id)):
                        return run.id
                await anyio.sleep(0.01)

    async with anyio.create_task_group() as tg, client(app) as c:
        tg.start_soon(lambda: DurableRunner(store, reflect=None).run(p, {"x": 1}, subscribers=[live]))
        run_id = await wait_for_slow_to_start()
        html = (await c.get(f"/ui/runs/{run_id}", headers=AUTH)).text
        nodes = dict(re.findall(r'data-step="(\w+)" data-status="(\w+)" transform', html))
        assert nodes == {"first": "succeeded", "slow": "running"}
        assert 'data-status="running"' in html.split('id="run-status"')[1][:40]
        release.set()
        stream = await c.get(f"/ui/live/runs/{run_id}", headers=AUTH)
    assert re.findall(r"^event: (\w+)$", stream.text, flags=re.M)[-1] == "done"
    assert '"status":"succeeded"' in stream.text


async def test_models_page_finds_routers_inside_wrappers(store: RunStore) -> None:
    from legato.observe import Instrumented, Metrics
    from legato.routing import Router
    from legato.server._catalog import MappingCatalog

    from .conftest import EchoModel

    router = Router("chat", [EchoModel("echo-a"), EchoModel("echo-b")])
    catalog = MappingCatalog({"chat": Instrumented(router, metrics=Metrics()), "solo": EchoModel("solo-1")})
    async with client(app_for(store, models=catalog)) as c:
        html = (await c.get("/ui/models", headers=AUTH)).text
    rows = re.findall(r"<tr><td class=\"\">\s*([\w—]+)</td><td class=\"\">\s*([\w#-]+)</td>", html)
    assert ("chat", "echo-a") in rows
    assert ("chat", "echo-b") in rows
    assert ("—", "solo") in rows  # an ungrouped model has a row and a state too
    assert '<span class="badge b-ready">ready</span>' in html
    assert html.count('<span class="badge b-healthy">healthy</span>') == 2


async def test_models_page_reads_the_groups_of_a_configured_catalog(store: RunStore, tmp_path: Path) -> None:
    from legato.config import LegatoConfig
    from legato.server import catalog_from_config

    model = {"provider": "openai", "model": "gpt-4o-mini", "base_url": "http://127.0.0.1:9/v1", "api_key": "env:PATH"}
    chat = {"deployments": [{"model": "m", "name": "east"}, {"model": "m", "name": "west"}]}
    twins = {"deployments": [{"model": "m"}, {"model": "m"}]}  # cannot be built: two deployments share a name
    cache = {"backend": "sqlite", "path": str(tmp_path / "cache.db")}  # the cache wraps each group
    config = LegatoConfig({"models": {"m": model}, "groups": {"chat": chat, "twins": twins}, "cache": cache})
    catalog = catalog_from_config(config)
    try:
        async with client(app_for(store, models=catalog)) as c:
            r = await c.get("/ui/models", headers=AUTH)
    finally:
        await catalog.aclose()
    assert r.status_code == 200
    rows = re.findall(r"<tr><td class=\"\">\s*([\w—]+)</td><td class=\"\">\s*([\w#-]+)</td>", r.text)
    assert {("chat", "east"), ("chat", "west"), ("—", "m"), ("twins", "twins")} <= set(rows)
    assert '<span class="badge b-unavailable">unavailable</span>' in r.text


async def test_a_model_that_cannot_be_built_is_shown_not_a_500(store: RunStore) -> None:
    from legato.errors import ConfigError

    class Catalog:
        def names(self) -> list[str]:
            return ["broken"]

        def get(self, name: str) -> object:
            raise ConfigError("models.broken.api_key: missing")

    async with client(app_for(store, models=Catalog())) as c:
        r = await c.get("/ui/models", headers=AUTH)
    assert r.status_code == 200
    assert '<span class="badge b-unavailable">unavailable</span>' in r.text
    assert "ConfigError" in r.text


async def test_pages_forbid_framing_and_foreign_scripts(store: RunStore) -> None:
    async with client(app_for(store)) as c:
        r = await c.get("/ui/", headers=AUTH)
    assert r.headers["x-frame-options"] == "DENY"
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["cache-control"] == "no-store"


def test_without_the_graph_steps_are_layered_by_what_finished_before_they_started() -> None:
    from legato.server.ui._view import build_run_view, layout_graph
    from legato.store import RunRecord, StepRecord

    run = RunRecord(id="r", pipeline="p", version_hash="v", inputs={}, status="failed", started_at=10.0)
    steps = [
        StepRecord("r", "a", "succeeded", started_at=10.0, finished_at=10.5),
        StepRecord("r", "b", "succeeded", started_at=10.5, finished_at=11.0),
        StepRecord("r", "c", "failed", started_at=10.5, finished_at=10.7, error_type="ValueError", error="x"),
        StepRecord("r", "d", "succeeded", started_at=11.0, finished_at=11.2),
    ]
    view = build_run_view(
        run, steps, [{"type": "StepSkipped", "step": "e", "at": 11.0, "data": {"reason": "c failed"}}]
    )
    layout = layout_graph(view)
    columns: dict[float, list[str]] = {}
    for node in layout.nodes:
        columns.setdefault(node.x, []).append(node.name)
    assert [sorted(v) for _, v in sorted(columns.items())] == [["a"], ["b", "c"], ["d"], ["e"]]
    assert layout.edges == []
    assert view.steps["e"].status == "skipped"
    assert view.steps["e"].skip_reason == "c failed"


async def test_retried_step_shows_each_attempt(store: RunStore) -> None:
    from legato.retry import RetryPolicy

    calls = {"n": 0}
    p = Pipeline("flaky")

    @p.step(retries=RetryPolicy(max_attempts=3, base_delay=0.01, jitter="none", retry_on=lambda e: True))
    async def fetch(x: int) -> int:
        calls["n"] += 1
        await anyio.sleep(0.01)
        if calls["n"] < 3:
            raise ConnectionError(f"reset by peer (try {calls['n']})")
        return x

    result = await DurableRunner(store, reflect=None).run(p, {"x": 1})
    app = FastAPI()
    mount_dashboard(app, DashboardSources(store=store, admin_key=ADMIN, graphs={"flaky": pipeline_graph(p)}.get))
    async with client(app) as c:
        html = (await c.get(f"/ui/runs/{result.run_id}", headers=AUTH)).text
    bars = re.findall(r'data-step="fetch" data-attempt="(\d)" data-status="(\w+)" data-start="([\d.]+)"', html)
    assert [(n, status) for n, status, _ in bars] == [("1", "failed"), ("2", "failed"), ("3", "succeeded")]
    starts = [float(start) for _, _, start in bars]
    assert starts == sorted(starts)
    assert "2 retries" in html
    assert "ConnectionError: reset by peer (try 1)" in html


async def test_run_page_shows_the_runs_journal_entries(store: RunStore) -> None:
    result = await DurableRunner(store).run(diamond(), {"x": 1})  # the default reflection notes a failed run
    async with client(app_for(store)) as c:
        html = (await c.get(f"/ui/runs/{result.run_id}", headers=AUTH)).text
    assert 'id="run-journal"' in html
    section = html.split('id="run-journal"')[1]
    assert "diamond" in section
    assert SECRET not in html


@pytest.mark.postgres
async def test_run_page_on_postgresql(postgres_url: str) -> None:
    async with RunStore(postgres_url) as pg:
        result = await DurableRunner(pg, reflect=None).run(diamond(), {"x": 5})
        async with client(app_for(pg)) as c:
            html = (await c.get(f"/ui/runs/{result.run_id}", headers=AUTH)).text
            listed = (await c.get("/ui/?pipeline=diamond&status=failed", headers=AUTH)).text
    nodes = dict(re.findall(r'<g class="node s-\w+" data-step="(\w+)" data-status="(\w+)"', html))
    assert nodes == {"a": "succeeded", "b": "succeeded", "c": "failed", "d": "skipped"}
    assert result.run_id in listed


def test_live_events_carry_redacted_error_messages() -> None:
    from legato.engine import StepFailed, StepRetried

    live = LiveEvents()
    live(StepRetried("r1", 1.0, "call", 1, 0.5, "RateLimited", f"slow down, key {SECRET}"))
    live(StepFailed("r1", 2.0, "call", "RateLimited", f"gave up with key {SECRET}", 1.5, attempt=2))
    events = live.events("r1")
    assert [e["type"] for e in events] == ["StepRetried", "StepFailed"]
    assert [e["data"]["message"] for e in events] == ["slow down, key [REDACTED]", "gave up with key [REDACTED]"]


async def test_the_cancel_button_stops_a_running_run_and_says_who(store: RunStore, runs: dict[str, str]) -> None:
    p = Pipeline("long")
    started = anyio.Event()

    @p.step
    async def wait() -> int:
        started.set()
        await anyio.sleep(60)
        return 1

    outcome: dict[str, object] = {}

    async def execute() -> None:
        outcome["result"] = await DurableRunner(store, reflect=None).run(p, {}, run_id="dash-cancel")

    async with client(app_for(store)) as c, anyio.create_task_group() as tg:
        tg.start_soon(execute)
        await started.wait()
        page = await c.get("/ui/runs/dash-cancel", headers=AUTH)
        assert 'action="/ui/runs/dash-cancel/cancel"' in page.text
        # another site's form is refused, even with the credentials
        confirmed = {"confirm": "yes"}
        foreign = await c.post(
            "/ui/runs/dash-cancel/cancel", data=confirmed, headers={**AUTH, "origin": "https://evil.example"}
        )
        assert foreign.status_code == 403
        assert (await c.post("/ui/runs/dash-cancel/cancel", data=confirmed)).status_code == 303  # to the login page
        unconfirmed = await c.post("/ui/runs/dash-cancel/cancel", headers={**AUTH, "origin": "http://dash"})
        assert unconfirmed.status_code == 400
        assert "tick the confirmation to cancel the run" in unconfirmed.text
        assert (await store.get_run("dash-cancel")).cancel_request is None
        done = await c.post("/ui/runs/dash-cancel/cancel", data=confirmed, headers={**AUTH, "origin": "http://dash"})
        assert done.status_code == 303
        assert done.headers["location"] == "/ui/runs/dash-cancel"
    record = await store.get_run("dash-cancel")
    assert record.status == "cancelled"
    assert record.cancelled_by == "the dashboard (master key, 127.0.0.1)"
    async with client(app_for(store)) as c:
        page = await c.get("/ui/runs/dash-cancel", headers=AUTH)
        assert "cancelled by the dashboard (master key, 127.0.0.1) at " in page.text
        assert "Cancel run" not in page.text
        again = await c.post(f"/ui/runs/{runs['ok']}/cancel", data={"confirm": "yes"}, headers=AUTH)
        assert again.status_code == 409
        assert "already succeeded" in again.text
