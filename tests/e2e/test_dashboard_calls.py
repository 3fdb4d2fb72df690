"""Model calls and charts in a real browser: ``legato serve`` in front of the fake provider.

A pipeline's ``llm:`` step calls a group whose only deployment fails, so the group's
fallback answers; a gateway call carries a W3C ``traceparent``. The run page and the
call view must show the prompt, the answer, the deployment that answered and the
route taken, and link the trace through the configured template. The charts are
checked against rows seeded in the store with known values. Every page is checked at
390x844 and 1440x900, light and dark: no page-wide horizontal scroll, AA contrast
for text, 3:1 for chart shapes, no console error.

With ``LEGATO_SCREENSHOTS=1`` the screenshots go to ``docs/images/``.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from test_dashboard import CHROMIUM, CHROMIUM_ARGS, CONTRAST_JS, DOC_IMAGES, MASTER

from _serve import serving
from legato.store import NewRun
from legato.testing import FakeProvider, Fault, Reply

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TRACE = "0af7651916cd43dd8448eb211c80319c"
PIPELINE = """
name: incident_summary
inputs:
  report: {type: string}
steps:
  summary:
    llm: assistant
    system: You write one-line incident summaries.
    prompt: "Summarise: ${inputs.report}"
"""
CONFIG = """
server:
  master_key: env:LEGATO_E2E_MASTER
  dashboard:
    trace_url: "https://jaeger.example/trace/{{trace_id}}"
pipelines: [incident.yaml]
models:
  primary: {{provider: openai, model: gpt-primary, base_url: "{base}", api_key: env:LEGATO_E2E_FAKE_KEY,
            price: {{input: 1000, output: 2000}}}}
  backup: {{provider: openai, model: gpt-backup, base_url: "{base}", api_key: env:LEGATO_E2E_FAKE_KEY,
           price: {{input: 1000, output: 2000}}}}
groups:
  assistant:
    deployments: [{{model: primary}}]
    fallbacks: {{on_failure: [backup]}}
    retry: false
"""
# Chart rows seeded in the store: (model, latency s, status, cost) and pipeline durations.
SEEDED_CALLS = [("seed-alpha", 0.1, "ok", 0.5), ("seed-alpha", 0.2, "ok", 0.25), ("seed-alpha", 0.3, "ok", 0.25),
                ("seed-alpha", 0.4, "ServerError", 0.0), ("seed-beta", 1.5, "ok", 2.0),
                ("seed-beta", 2.5, "RateLimited", 0.0)]  # fmt: skip
SEEDED_RUNS = [1.0, 2.0, 3.0, 4.0, 10.0]  # seconds; the 10 s run failed


@dataclass
class Served:
    url: str
    fake: FakeProvider
    db: Path


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with FakeProvider(seed=0).in_thread() as fake:
        (tmp_path / "incident.yaml").write_text(PIPELINE)
        (tmp_path / "legato.yaml").write_text(CONFIG.format(base=fake.openai_base_url))
        db = tmp_path / "legato.db"
        env = {"LEGATO_E2E_MASTER": MASTER, "LEGATO_E2E_FAKE_KEY": "sk-fake"}
        with serving(tmp_path / "legato.yaml", "--database-url", f"sqlite:///{db}", env=env, ready="/healthz") as gw:
            yield Served(gw.url, fake, db)


def _seed(db: Path) -> None:
    """Rows with known values for the charts, written into the server's store (SQLite, WAL)."""
    from legato.store import RunStore, call_values, record_calls
    from legato.store._schema import runs

    async def seed() -> None:
        import sqlalchemy as sa

        now = time.time()
        async with RunStore(db) as store:
            rows = [call_values({"model": m, "latency_s": lat, "status": st, "cost": cost, "at": now - 60}, store,
                                source="gateway", tenant="seeded") for m, lat, st, cost in SEEDED_CALLS]  # fmt: skip
            await record_calls(store, rows)
            for i, seconds in enumerate(SEEDED_RUNS):
                record, _ = await store.create_run(NewRun(pipeline="seeded_batch", version_hash="v", inputs={"i": i}))
                status = "failed" if seconds == 10.0 else "succeeded"
                done = sa.update(runs).where(runs.c.id == record.id)
                done = done.values(status=status, started_at=now - 100, finished_at=now - 100 + seconds)
                await store.run_sync(lambda conn, u=done: conn.execute(u))

    asyncio.run(seed())


def _run_with_fallback(served: Served) -> str:
    served.fake.inject(Fault.server_error(), model="gpt-primary")
    served.fake.script(Reply(text="Checkout was down for 40 minutes in eu-west."), model="gpt-backup")
    auth = {"authorization": f"Bearer {MASTER}"}
    report = "Checkout returned 500s in eu-west from 09:10 to 09:50."
    r = httpx.post(f"{served.url}/v1/pipelines/incident_summary/runs", headers=auth, timeout=10,
                   json={"inputs": {"report": report}})  # fmt: skip
    assert r.status_code == 202, r.text
    run_id = str(r.json()["id"])
    for _ in range(300):
        status = httpx.get(f"{served.url}/v1/runs/{run_id}", headers=auth, timeout=5).json()["status"]
        if status not in ("pending", "running", "queued"):
            break
        time.sleep(0.1)
    assert status == "succeeded"
    return run_id


def _budgeted_call(served: Served) -> str:
    """A call by a key with a daily budget of $0.10; returns the key's visible prefix."""
    admin = {"authorization": f"Bearer {MASTER}"}
    key_spec = {"name": "docs-bot", "scopes": ["chat"], "budget_usd": 0.1, "budget_period": "day"}
    r = httpx.post(f"{served.url}/v1/admin/keys", headers=admin, timeout=10, json=key_spec)
    assert r.status_code == 201, r.text
    key = str(r.json()["key"])
    body = {"model": "backup", "messages": [{"role": "user", "content": "Draft the release note."}]}
    r = httpx.post(f"{served.url}/v1/chat/completions", headers={"authorization": f"Bearer {key}"}, json=body,
                   timeout=10)  # fmt: skip
    assert r.status_code == 200, r.text
    return key[:12]


def _streamed_call(served: Served) -> None:
    headers = {"authorization": f"Bearer {MASTER}", "x-request-id": "req-e2e-streamed"}
    body = {"model": "backup", "stream": True, "messages": [{"role": "user", "content": "Count to three."}]}
    with httpx.stream("POST", f"{served.url}/v1/chat/completions", headers=headers, json=body, timeout=10) as r:
        assert r.status_code == 200
        assert "[DONE]" in "".join(r.iter_text())


def _gateway_call(served: Served) -> str:
    headers = {"authorization": f"Bearer {MASTER}", "traceparent": f"00-{TRACE}-b7ad6b7169203331-01",
               "x-request-id": "req-e2e-capital"}  # fmt: skip
    body = {"model": "backup", "messages": [{"role": "user", "content": "Capital of France?"}]}
    r = httpx.post(f"{served.url}/v1/chat/completions", headers=headers, json=body, timeout=10)
    assert r.status_code == 200, r.text
    return str(r.json()["choices"][0]["message"]["content"])


SHAPES_JS = """
() => {
  function rgb(c) { const m = c.match(/[\\d.]+/g); return m ? m.map(Number) : [0, 0, 0]; }
  function lum([r, g, b]) {
    const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  }
  const card = rgb(getComputedStyle(document.querySelector('.card')).backgroundColor);
  const failures = [];
  for (const el of document.querySelectorAll('figure.chart rect:not(.track)')) {
    const style = getComputedStyle(el);
    const outlined = el.classList.contains('outline');
    const colour = rgb(outlined ? style.stroke : style.fill);
    const [a, b] = [lum(colour), lum(card)].sort((x, y) => y - x);
    const ratio = (a + 0.05) / (b + 0.05);
    if (ratio < 3) { failures.push(`${el.getAttribute('class')} ${ratio.toFixed(2)}`); }
  }
  return failures;
}
"""


def _cell(page: object, table: str, row_label: str, column: str) -> str:
    return str(page.evaluate(  # type: ignore[attr-defined]
        """([table, rowLabel, column]) => {
            const t = document.getElementById(table);
            const col = [...t.querySelectorAll('thead th')].findIndex(th => th.textContent.trim() === column);
            const row = [...t.querySelectorAll('tbody tr')].find(tr => tr.cells[0].textContent.trim() === rowLabel);
            return row && col >= 0 ? row.cells[col].textContent.trim() : null;
        }""",
        [table, row_label, column],
    ))  # fmt: skip


def test_model_calls_and_charts(served: Served, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    run_id = _run_with_fallback(served)
    _seed(served.db)
    budget = _budgeted_call(served)
    _streamed_call(served)
    answer = _gateway_call(served)
    today = time.strftime("%Y-%m-%d", time.gmtime())
    images = DOC_IMAGES if os.environ.get("LEGATO_SCREENSHOTS") == "1" else tmp_path / "images"
    images.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(f"{served.url}/ui/login")
            page.fill("input[name=key]", MASTER)
            page.click("button[type=submit]")

            # The run's call: the prompt, the answer, the deployment that answered, the route.
            page.goto(f"{served.url}/ui/runs/{run_id}")
            page.locator("#step-summary summary").click()
            link = page.locator("#step-summary a.call-link")
            expect(link).to_have_text("✓ gpt-backup")
            link.click()  # the step's card links to its call, which opens
            call = page.locator("#run-calls details.call").first
            expect(call).to_have_attribute("open", "")
            expect(call.locator("summary")).to_contain_text("summary")
            expect(call.locator("summary .deployment")).to_have_text("gpt-backup")
            expect(call.locator("pre.prompt")).to_have_text(
                "system: You write one-line incident summaries.\n"
                "user: Summarise: Checkout returned 500s in eu-west from 09:10 to 09:50."
            )
            expect(call.locator("pre.answer")).to_have_text("Checkout was down for 40 minutes in eu-west.")
            route = call.locator("ol.route li")
            expect(route.nth(0)).to_contain_text("primary failed with ServerError, moved to next deployment")
            expect(route.nth(1)).to_contain_text("assistant failed with ServerError, moved to backup")
            expect(route.nth(2)).to_have_text("answered by gpt-backup")

            # The gateway call, its trace linked through the template.
            page.goto(f"{served.url}/ui/calls")
            mine = page.locator("details.call", has_text="req-e2e-capital")
            expect(mine.locator("a.trace")).to_have_attribute("href", f"https://jaeger.example/trace/{TRACE}")
            expect(mine.locator("pre.prompt")).to_have_text("user: Capital of France?")
            expect(mine.locator("pre.answer")).to_have_text(answer)
            streamed = page.locator("details.call", has_text="req-e2e-streamed")
            first_token = streamed.locator("dt", has_text="First token").locator("xpath=following-sibling::dd")
            expect(first_token).to_have_text(re.compile(r"^\d+ ms$|^\d+\.\d+ s$"))  # measured, not "—"
            expect(streamed.locator("pre.answer")).not_to_have_text("—")

            # Charts: the seeded numbers, as text and as shapes.
            page.goto(f"{served.url}/ui/charts?days=7")
            errors = page.locator("#chart-errors")
            expect(errors.locator(".bar-row[data-label='seed-alpha'] .bar-value")).to_have_text("25.0% (1 of 4 calls)")
            expect(errors.locator(".bar-row[data-label='seed-beta'] .bar-value")).to_have_text("50.0% (1 of 2 calls)")
            alpha = errors.locator(".bar-row[data-label='seed-alpha'] rect")
            expect(alpha).to_have_attribute("width", "50.000%")  # half of the worst rate, seed-beta's
            latency = page.locator("#chart-latency .bar-row[data-label='seed-alpha'] .bar-value")
            expect(latency).to_have_text("p50 200 ms · p95 400 ms")
            durations = page.locator("#chart-durations .bar-row[data-label='seeded_batch'] .bar-value")
            expect(durations).to_have_text("p50 3.00 s · p95 10.00 s · max 10.00 s (5 runs, 1 failed)")
            bar = page.locator(f"#chart-budgets .bar-row[data-label='docs-bot ({budget}…)'] .bar-value")
            expect(bar).to_contain_text("of $0.10 this day")
            assert _cell(page, "chart-spend-model-table", today, "seed-alpha") == "$1.00"
            assert _cell(page, "chart-spend-model-table", today, "seed-beta") == "$2.00"
            assert _cell(page, "chart-spend-key-table", today, "seeded") == "$3.00"
            assert page.locator("#chart-spend-model svg.columns title").first.text_content()
        finally:
            browser.close()
        _every_screen(pw, served, run_id, images)


def _every_screen(pw: object, served: Served, run_id: str, images: Path) -> None:
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)  # type: ignore[attr-defined]
    pages = {"calls": "/ui/calls", "charts": "/ui/charts?days=7", "run": f"/ui/runs/{run_id}"}
    try:
        for (width, height), scheme in [((390, 844), "light"), ((1440, 900), "light"), ((390, 844), "dark"),
                                        ((1440, 900), "dark")]:  # fmt: skip
            context = browser.new_context(viewport={"width": width, "height": height}, color_scheme=scheme)
            page = context.new_page()
            errors: list[str] = []
            page.on("console", lambda m, errors=errors: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
            page.on("response", lambda r, errors=errors: errors.append(r.url) if r.status >= 400 else None)
            page.goto(f"{served.url}/ui/login")
            page.fill("input[name=key]", MASTER)
            page.click("button[type=submit]")
            for name, path in pages.items():
                page.goto(f"{served.url}{path}")
                page.wait_for_load_state("networkidle") if name != "run" else page.wait_for_timeout(300)
                for details in page.locator("details.call").all()[:1] + page.locator("details.values").all():
                    details.locator("summary").click()
                overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
                assert overflow <= 0, f"{name} at {width}px is {overflow}px wider than the screen"
                assert page.evaluate(CONTRAST_JS) == [], f"{name} at {width}px ({scheme})"
                assert page.evaluate(SHAPES_JS) == [], f"{name} at {width}px ({scheme}): chart shapes under 3:1"
                if name != "run":
                    suffix = "" if scheme == "light" else "-dark"
                    page.screenshot(path=str(images / f"dashboard-{name}-{width}{suffix}.png"), full_page=True)
            assert errors == [], errors
            context.close()
    finally:
        browser.close()
