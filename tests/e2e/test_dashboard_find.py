"""Finding runs and resuming an interrupted one, in a real browser against ``legato serve``.

With ``LEGATO_SCREENSHOTS=1`` the runs list screenshots are saved to ``docs/images/``.

- 1,000 runs seeded through the store API before the server starts (SQLite, and a
  fresh PostgreSQL database); the search box
  finds the one run holding a word, "More filters" narrows by tag, the pager walks a
  common word's matches, and the page fits 390x844 and 1440x900 with no console error.
- A ``legato run`` process is killed (SIGKILL) after its first step was checkpointed;
  the run page offers **Resume**, and the resumed run completes on the server without
  running that step again.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from _serve import serving
from legato.store import NewRun, RunStore

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
MASTER = "lg-e2e-find-master-key-0123456789"
DOC_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"

WORK = """
import os
import time


def fetch(text: str, log: str) -> str:
    with open(log, "a") as f:
        f.write("fetch\\n")
    return text.strip()


def report(fetch: str, gate: str, log: str) -> str:
    while not os.path.exists(gate):  # until the test opens the gate (the test bounds the wait)
        time.sleep(0.05)
    with open(log, "a") as f:
        f.write("report\\n")
    return fetch.upper()
"""

PIPELINE = """
name: tickets
inputs:
  text: {type: string}
  gate: {type: string}
  log: {type: string}
steps:
  fetch:
    uses: ./work.py:fetch
    with: {text: "${inputs.text}", log: "${inputs.log}"}
  report:
    uses: ./work.py:report
    with: {fetch: "${steps.fetch}", gate: "${inputs.gate}", log: "${inputs.log}"}
"""


@contextlib.contextmanager
def serve(tmp_path: Path, database_url: str) -> Iterator[str]:
    with serving(tmp_path / "legato.yaml", "--database-url", database_url, env={"LEGATO_E2E_MASTER": MASTER},
                 ready="/healthz") as served:  # fmt: skip
        yield served.url


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "work.py").write_text(textwrap.dedent(WORK))
    (tmp_path / "tickets.yaml").write_text(PIPELINE)
    (tmp_path / "legato.yaml").write_text("server:\n  master_key: env:LEGATO_E2E_MASTER\npipelines: [tickets.yaml]\n")
    return tmp_path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, project: Path) -> Iterator[str]:
    """A store of its own: a SQLite file, or a fresh PostgreSQL database (dropped after)."""
    if request.param == "sqlite":
        yield f"sqlite:///{project / 'legato.db'}"
        return
    import asyncpg

    admin, name = request.getfixturevalue("postgres_admin_dsn"), f"legato_e2e_find_{uuid.uuid4().hex[:10]}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(admin, user="postgres")
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    anyio.run(run, f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        anyio.run(run, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def seed(url: str) -> dict[int, str]:
    ids = {}
    async with RunStore(url) as store:
        for i in range(1000):
            text = f"ticket {i} about {'a late parcel' if i % 4 == 0 else 'an invoice'}"
            if i == 612:
                text += " sent to Zanzibar"
            record, _ = await store.create_run(NewRun(pipeline="tickets", version_hash="seeded", inputs={"text": text},
                                               owner="seed", tags=["vip"] if i % 250 == 3 else []))  # fmt: skip
            await store.finish_run(record.id, "seed", status="succeeded", outputs={"report": text.upper()},
                                   cost=i / 10_000)  # fmt: skip
            ids[i] = record.id
    return ids


def sign_in(browser: Any, base: str, viewport: dict[str, int]) -> tuple[Any, list[str]]:
    page = browser.new_page(viewport=viewport)
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{base}/ui/login?next=/ui/")
    page.fill("input[name=key]", MASTER)
    page.click("button[type=submit]")
    page.wait_for_selector("h1:text('Runs')")
    return page, errors


def shown(page: Any) -> list[str]:
    return list(page.locator("#runs-body tr[data-run]").evaluate_all("rs => rs.map(r => r.dataset.run)"))


def test_search_a_thousand_runs_from_the_runs_list(project: Path, database_url: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    images = DOC_IMAGES if os.environ.get("LEGATO_SCREENSHOTS") == "1" else project / "images"
    images.mkdir(parents=True, exist_ok=True)
    ids = anyio.run(seed, database_url)
    with serve(project, database_url) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for width, height in [(1440, 900), (390, 844)]:
                page, errors = sign_in(browser, base, {"width": width, "height": height})
                page.fill("input[name=q]", "zanzibar")
                page.click("#run-filters button[type=submit]")
                expect(page.locator("#runs-body tr[data-run]")).to_have_count(1)
                assert shown(page) == [ids[612]]
                assert "q=zanzibar" in page.url  # the filter stays in the URL

                page.goto(f"{base}/ui/")
                page.locator(".more-filters summary").click()
                page.fill("input[name=tags]", "vip")
                page.fill("input[name=min_cost]", "0.01")
                page.click("#run-filters button[type=submit]")
                expect(page.locator("#runs-body tr[data-run]")).to_have_count(3)
                assert set(shown(page)) == {ids[253], ids[503], ids[753]}
                expect(page.locator(".more-filters")).to_have_attribute("open", "")
                overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
                assert overflow <= 0, f"the filtered runs list at {width}px is {overflow}px wider than the screen"
                if database_url.startswith("sqlite"):
                    page.screenshot(path=str(images / f"dashboard-runs-search-{width}.png"))

                page.goto(f"{base}/ui/?q=late+parcel&limit=100&sort=oldest")
                seen: list[str] = []
                while True:
                    seen += shown(page)
                    if page.locator("#next-page").count() == 0:
                        break
                    page.click("#next-page")
                    page.wait_for_load_state()
                assert seen == [ids[i] for i in range(0, 1000, 4)]  # every match once, in order
                assert errors == []
                page.close()
        finally:
            browser.close()


def _checkpointed(db: Path, step: str) -> bool:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        query = "SELECT count(*) FROM step_attempts WHERE step = ? AND status = 'succeeded'"
        return bool(conn.execute(query, (step,)).fetchone()[0])


def test_a_killed_run_is_resumed_from_the_dashboard(project: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    db, gate, log = project / "legato.db", project / "gate", project / "steps.log"
    with serve(project, f"sqlite:///{db}") as base:
        legato = Path(sys.executable).parent / "legato"
        cmd = [str(legato), "run", str(project / "tickets.yaml"), "--database-url", f"sqlite:///{db}",
               "-i", "text=where is my parcel", "-i", f"gate={gate}", "-i", f"log={log}"]  # fmt: skip
        worker = subprocess.Popen(cmd, cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while not (db.exists() and _checkpointed(db, "fetch")):
                assert worker.poll() is None, "legato run exited before its first checkpoint"
                assert time.monotonic() < deadline, "the first step was never checkpointed"
                time.sleep(0.05)
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
        with contextlib.closing(sqlite3.connect(db)) as conn:
            run_id, status = conn.execute("SELECT id, status FROM runs").fetchone()
        assert status == "running"  # what the store records: nobody finished it

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page, errors = sign_in(browser, base, {"width": 1440, "height": 900})
                page.goto(f"{base}/ui/runs/{run_id}")
                form = page.locator("form.resume-run")
                expect(form).to_be_visible()
                form.locator("input[name=confirm]").check()
                form.locator("button").click()
                expect(page).to_have_url(f"{base}/ui/runs/{run_id}")
                gate.write_text("go")
                expect(page.locator("#run-status")).to_have_attribute("data-status", "succeeded")
                expect(page.locator("form.resume-run")).to_have_count(0)
                assert errors == []
            finally:
                browser.close()
        with httpx.Client(base_url=base, headers={"authorization": f"Bearer {MASTER}"}) as c:
            run = c.get(f"/v1/runs/{run_id}").json()
            audit = c.get("/v1/admin/audit", params={"action": "run_resumed"}).json()["data"]
        assert run["outputs"] == {"fetch": "where is my parcel", "report": "WHERE IS MY PARCEL"}
        assert log.read_text().split() == ["fetch", "report"]  # the checkpointed step ran once
        assert [a["target"] for a in audit] == [run_id]
