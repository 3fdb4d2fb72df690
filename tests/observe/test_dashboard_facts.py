"""What the dashboard states about runs is true: regression tests, one per wrong fact
an operator found (against a real SQLite run store and real pipeline runs)."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest
from fastapi import FastAPI

from legato import Pipeline
from legato.retry import RetryPolicy
from legato.server.ui import DashboardSources, mount_dashboard, pipeline_graph
from legato.server.ui._render import _usd
from legato.server.ui._view import NODE_H, NODE_W, RunView, StepView, layout_graph
from legato.store import DurableRunner, NewRun, RunStore

ADMIN = "admin-key-for-facts"
AUTH = {"authorization": f"Bearer {ADMIN}"}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[RunStore]:
    s = await RunStore(f"sqlite+aiosqlite:///{tmp_path / 'facts.db'}").open()
    yield s
    await s.aclose()


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 4321)), base_url="http://d")


def app_for(store: RunStore, *pipelines: Pipeline, **kw: object) -> FastAPI:
    graphs = {p.name: pipeline_graph(p) for p in pipelines}
    app = FastAPI()
    mount_dashboard(app, DashboardSources(store=store, admin_key=ADMIN, graphs=graphs.get, **kw))  # type: ignore[arg-type]
    return app


def flaky_map() -> Pipeline:
    p = Pipeline("flaky-map")
    tries: dict[int, int] = {}

    @p.step(map="n", max_concurrency=4, retries=RetryPolicy(max_attempts=4, base_delay=0.001, jitter="none"))
    async def enrich(n: int) -> int:
        tries[n] = tries.get(n, 0) + 1
        if n in (2, 5) and tries[n] < 3:  # items 2 and 5 fail twice each, then succeed
            raise ConnectionError(f"reset while fetching item {n}")
        await anyio.sleep(0)
        return n * 10

    @p.step
    async def total(enrich: list[int]) -> int:
        return sum(enrich)

    return p


async def test_map_item_retries_are_per_item_attempts_and_nothing_runs_after_the_end(store: RunStore) -> None:
    p = flaky_map()
    result = await DurableRunner(store, reflect=None).run(p, {"n": list(range(8))})
    assert result.status == "succeeded"
    retried = [e for e in await store.events(result.run_id) if e.type == "StepRetried"]
    assert sorted((e.data["index"], e.data["attempt"]) for e in retried) == [(2, 1), (2, 2), (5, 1), (5, 2)]

    async with client(app_for(store, p)) as c:
        html = (await c.get(f"/ui/runs/{result.run_id}", headers=AUTH)).text
    items = re.findall(r'<tr data-item="(\d+)" data-attempt="(\d+)" data-status="(\w+)"', html)
    assert items == [
        ("2", "1", "failed"), ("2", "2", "failed"), ("2", "3", "succeeded"),
        ("5", "1", "failed"), ("5", "2", "failed"), ("5", "3", "succeeded"),
    ]  # fmt: skip
    assert "reset while fetching item 5" in html
    # The step itself ran once: one bar, and nothing "running" in a run that ended.
    assert re.findall(r'data-step="enrich" data-attempt="(\d+)" data-status="(\w+)"', html) == [("1", "succeeded")]
    assert 'data-status="running"' not in html
    assert "4 retries" in html


async def test_the_timeline_of_a_finished_run_stops_growing(store: RunStore) -> None:
    p = flaky_map()
    result = await DurableRunner(store, reflect=None).run(p, {"n": list(range(8))})
    run = await store.get_run(result.run_id)
    assert run.finished_at is not None
    later = {"clock": lambda: run.finished_at + 3600.0}
    async with client(app_for(store, p, **later)) as c:
        html = (await c.get(f"/ui/runs/{result.run_id}", headers=AUTH)).text
    ticks = re.findall(r'class="tick-label"[^>]*>([^<]+)<', html)
    assert ticks
    assert all("min" not in t for t in ticks), ticks  # the axis spans the run, not the hour after


def failing() -> Pipeline:
    p = Pipeline("stops-early")

    @p.step
    async def fetch(x: int) -> int:
        raise ValueError("upstream refused")

    @p.step
    async def classify(fetch: int) -> int:
        return fetch

    @p.step
    async def report(classify: int) -> int:
        return classify

    return p


async def test_steps_that_never_ran_in_a_finished_run_say_not_run_and_why(store: RunStore) -> None:
    p = failing()
    result = await DurableRunner(store, reflect=None).run(p, {"x": 1})
    assert result.status == "failed"
    async with client(app_for(store, p)) as c:
        html = (await c.get(f"/ui/runs/{result.run_id}", headers=AUTH)).text
    assert ">pending<" not in html.replace('class="badge s-pending">pending</span>', "")  # only in the legend
    assert re.findall(r'<details class="step s-(\w+)" id="step-(\w+)"', html) == [
        ("failed", "fetch"), ("not_run", "classify"), ("not_run", "report"),
    ]  # fmt: skip
    assert html.count("the run failed at step &#39;fetch&#39; before this step could start") == 2
    assert '<span class="badge s-not_run">not run</span>' in html


@pytest.mark.parametrize(
    ("value", "shown"),
    [(None, "—"), (0.0, "$0"), (0.000011, "$0.000011"), (0.0000114, "$0.000011"), (0.0042, "$0.0042"),
     (0.37, "$0.37"), (0.1, "$0.10"), (1204.5, "$1,204.50")],
)  # fmt: skip
def test_costs_keep_their_significant_digits(value: float | None, shown: str) -> None:
    assert _usd(value) == shown


async def test_a_tiny_run_cost_is_not_shown_as_zero(store: RunStore) -> None:
    record, _ = await store.create_run(NewRun(pipeline="cheap", version_hash="v", inputs={}, owner="worker-1"))
    await store.finish_run(record.id, "worker-1", status="succeeded", outputs={}, cost=0.000011)
    async with client(app_for(store)) as c:
        listing = (await c.get("/ui/", headers=AUTH)).text
        page = (await c.get(f"/ui/runs/{record.id}", headers=AUTH)).text
    assert "$0.000011" in listing
    assert "$0.000011" in page
    assert not re.search(r"\$0\.0000(?!1)", listing + page)


async def test_the_pipeline_filter_lists_every_stored_and_configured_pipeline(store: RunStore) -> None:
    await store.create_run(NewRun(pipeline="rarely-run", version_hash="v", inputs={}))
    for i in range(505):  # more runs of another pipeline than the runs list ever reads
        await store.create_run(NewRun(pipeline="busy", version_hash="v", inputs={"i": i}))
    async with client(app_for(store, pipelines=["nightly-never-run"])) as c:
        html = (await c.get("/ui/", headers=AUTH)).text
    options = re.findall(r"<option (?:selected )?>([^<]+)</option>", html.split('name="status"')[0])
    assert options == ["busy", "nightly-never-run", "rarely-run"]


@pytest.mark.parametrize(("limit", "rows"), [("500", 500), ("25", 25), ("7", 7)])
async def test_the_limit_select_shows_the_limit_the_table_uses(store: RunStore, limit: str, rows: int) -> None:
    for i in range(501):
        await store.create_run(NewRun(pipeline="busy", version_hash="v", inputs={"i": i}))
    async with client(app_for(store)) as c:
        html = (await c.get(f"/ui/?limit={limit}", headers=AUTH)).text
    assert html.count('class="run-row"') == rows
    assert re.findall(r"<option selected>(\d+)</option>", html) == [limit]


def _points(path: str) -> list[tuple[float, float]]:
    """Points along an SVG path of M, C and L commands (what the graph draws)."""
    tokens = re.findall(r"[MCL]|-?[\d.]+,-?[\d.]+", path)
    pts: list[tuple[float, float]] = []
    cur, i = (0.0, 0.0), 0
    while i < len(tokens):
        cmd = tokens[i]
        coords = [tuple(map(float, t.split(","))) for t in tokens[i + 1 : i + (4 if cmd == "C" else 2)]]
        if cmd == "C":
            (ax, ay), (bx, by), (ex, ey) = coords
            for k in range(1, 41):
                t = k / 40
                u = 1 - t
                x = u**3 * cur[0] + 3 * u * u * t * ax + 3 * u * t * t * bx + t**3 * ex
                y = u**3 * cur[1] + 3 * u * u * t * ay + 3 * u * t * t * by + t**3 * ey
                pts.append((x, y))
            cur = (ex, ey)
        elif cmd == "L":
            (ex, ey) = coords[0]
            pts.extend((cur[0] + (ex - cur[0]) * k / 40, cur[1] + (ey - cur[1]) * k / 40) for k in range(1, 41))
            cur = (ex, ey)
        else:
            cur = coords[0]
            pts.append(cur)
        i += 4 if cmd == "C" else 2
    return pts


def test_graph_edges_never_pass_under_another_step() -> None:
    # The pipeline the issue names: entities feeds report, not escalate, yet a straight
    # curve from entities to report crossed escalate's box.
    deps = {"fetch": [], "sentiment": ["fetch"], "entities": ["fetch"], "topic": ["fetch"], "escalate": ["sentiment"],
            "summary": ["escalate"], "report": ["entities", "topic", "summary", "fetch"]}  # fmt: skip
    steps = {n: StepView(name=n, deps=d) for n, d in deps.items()}
    view = RunView("r", "p", "succeeded", {}, steps, [(d, n) for n, ds in deps.items() for d in ds],
                   0.0, None, None, None, None, None, None, graph_known=True)  # fmt: skip
    layout = layout_graph(view)
    boxes = {n.name: n for n in layout.nodes}
    long_edges = 0
    for a, b, path in layout.edges:
        long_edges += " L" in path
        for x, y in _points(path):
            for n in layout.nodes:
                if n.name in (a, b):
                    continue
                inside = n.x + 1 < x < n.x + NODE_W - 1 and n.y + 1 < y < n.y + NODE_H - 1
                assert not inside, f"edge {a}->{b} passes under {n.name} at ({x:.0f},{y:.0f})"
        first, last = _points(path)[0], _points(path)[-1]
        assert first == (pytest.approx(boxes[a].x + NODE_W, abs=0.1), pytest.approx(boxes[a].y + NODE_H / 2, abs=0.1))
        assert last[0] == pytest.approx(boxes[b].x, abs=0.1)
    assert long_edges >= 3  # entities, topic and fetch skip layers to reach report


def slow_items() -> Pipeline:
    p = Pipeline("slow-items")
    tries: dict[int, int] = {}

    @p.step(map="n", max_concurrency=3, retries=RetryPolicy(max_attempts=3, base_delay=0.001, jitter="none"))
    async def work(n: int) -> int:
        tries[n] = tries.get(n, 0) + 1
        if n == 4 and tries[n] == 1:
            raise TimeoutError("item 4 timed out once")
        await anyio.sleep(0.2 if n == 6 else 0.005)
        return n

    return p


async def test_map_items_table_lists_failed_then_slowest_items_and_a_timeline_lane(store: RunStore) -> None:
    p = slow_items()
    result = await DurableRunner(store, reflect=None).run(p, {"n": list(range(10))})
    assert result.status == "succeeded"
    (record,) = [s for s in await store.steps(result.run_id) if s.step == "work"]
    assert sorted(int(i[0]) for i in record.meta["items"]) == list(range(10))  # kept with the step
    async with client(app_for(store, p)) as c:
        html = (await c.get(f"/ui/runs/{result.run_id}", headers=AUTH)).text
    table = html.split('class="grid small map-items"')[1].split("</table>")[0]
    rows = re.findall(r'<tr data-item="(\d+)" data-status="(\w+)"><td class="num">\d+</td>.*?'
                      r'<td class="num">(\d+)</td><td class="num">([^<]+)</td>', table, flags=re.S)  # fmt: skip
    assert len(rows) == 10
    assert rows[0][:3] == ("6", "succeeded", "1")  # the slowest item first
    assert float(rows[0][3].split()[0]) >= 200
    assert ("4", "succeeded", "2") in [r[:3] for r in rows]  # retried once
    lane = re.findall(r'class="bar item-bar s-(\w+)" data-step="work" data-item="(\d+)"', html)
    assert sorted(int(i) for _, i in lane) == list(range(10))
    assert "work · items" in html


@pytest.mark.parametrize("retried", [False, True])
async def test_a_failed_map_item_is_listed_first_with_its_error(store: RunStore, retried: bool) -> None:
    p = Pipeline("bad-item")
    retry = RetryPolicy(max_attempts=2, base_delay=0.001, jitter="none", retry_on=lambda e: retried)

    @p.step(map="n", max_concurrency=2, retries=retry)
    async def work(n: int) -> int:
        if n == 3:
            raise ValueError(f"item {n} is malformed")
        await anyio.sleep(0.05 if n == 4 else 0)
        return n

    result = await DurableRunner(store, reflect=None).run(p, {"n": list(range(5))})
    assert result.status == "failed"
    failed = [e for e in await store.events(result.run_id) if e.type == "StepFailed"]
    assert [e.data.get("index") for e in failed] == [3]
    async with client(app_for(store, p)) as c:
        html = (await c.get(f"/ui/runs/{result.run_id}", headers=AUTH)).text
    table = html.split('class="grid small map-items"')[1].split("</table>")[0]
    item_row = r'<tr data-item="(\d+)" data-status="(\w+)"><td class="num">\d+</td>.*?<td class="num">(\d+)</td>'
    rows = re.findall(item_row, table, flags=re.S)
    assert rows[0] == ("3", "failed", "2" if retried else "1")
    assert "ValueError: item 3 is malformed" in table


async def test_runs_page_through_every_run_with_a_cursor_and_filters_in_the_url(store: RunStore) -> None:
    made = [
        (await store.create_run(NewRun(pipeline="busy", version_hash="v", inputs={"i": i})))[0].id for i in range(120)
    ]
    seen: list[str] = []
    async with client(app_for(store)) as c:
        url: str | None = "/ui/?pipeline=busy&limit=50"
        pages = 0
        while url is not None:
            html = (await c.get(url, headers=AUTH)).text
            seen += re.findall(r'<tr class="run-row" data-run="(\w+)"', html)
            nxt = re.search(r'<a href="([^"]+)" id="next-page"', html)
            url = nxt.group(1).replace("&amp;", "&") if nxt else None
            if url is not None:
                assert "pipeline=busy" in url  # the filters stay in the URL
            pages += 1
        assert pages == 3
        assert seen == list(reversed(made))  # newest first, each run once
        oldest = (await c.get("/ui/?sort=oldest&limit=5", headers=AUTH)).text
        assert re.findall(r'data-run="(\w+)"', oldest)[:5] == made[:5]
        run = await store.get_run(made[0])
        today = time.strftime("%Y-%m-%d", time.gmtime(run.created_at))
        tomorrow = time.strftime("%Y-%m-%d", time.gmtime(run.created_at + 86400))
        assert (await c.get(f"/ui/?since={tomorrow}", headers=AUTH)).text.count('class="run-row"') == 0
        assert (await c.get(f"/ui/?since={today}&until={today}&limit=500", headers=AUTH)).text.count(
            'class="run-row"'
        ) == 120
        assert (await c.get("/ui/?cursor=garbage&since=not-a-day", headers=AUTH)).status_code == 200


def test_a_live_runs_list_sends_only_the_rows_that_changed() -> None:
    from legato.server.ui._live import RowPatches

    patches = RowPatches("runs-body")
    first = patches.update({"b": "<tr>b running</tr>", "a": "<tr>a running</tr>"})
    assert first["html"] == {"b": "<tr>b running</tr>", "a": "<tr>a running</tr>"}
    idle = patches.update({"b": "<tr>b running</tr>", "a": "<tr>a running</tr>"})
    assert idle == {"target": "runs-body", "html": {}, "order": ["b", "a"]}
    assert patches.update({"b": "<tr>b running</tr>", "a": "<tr>a running</tr>"}) == idle  # not resent
    one = patches.update({"c": "<tr>c new</tr>", "b": "<tr>b succeeded</tr>", "a": "<tr>a running</tr>"})
    assert one == {"target": "runs-body", "html": {"c": "<tr>c new</tr>", "b": "<tr>b succeeded</tr>"},
                   "order": ["c", "b", "a"]}  # fmt: skip
