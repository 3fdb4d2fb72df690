"""The dashboard in a real browser: ``legato serve``, one pipeline, the run watched live.

Chromium comes from Debian (``/usr/bin/chromium``), driven by Playwright. With
``LEGATO_SCREENSHOTS=1`` the screenshots are saved to ``docs/images/`` (the ones the
README shows); otherwise to the test's temporary folder, so a test run leaves the
work tree as it was.
"""

from __future__ import annotations

import os
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from _serve import serving

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
MASTER = "lg-e2e-master-key-0123456789"
DOC_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"

WORK = """
import os

import anyio


async def fetch(text: str) -> str:
    await anyio.sleep(0.3)
    return text.strip()


async def sentiment(text: str, gate: str) -> dict:
    for _ in range(1200):  # wait (at most a minute) until the test opens the gate
        if os.path.exists(gate):
            break
        await anyio.sleep(0.05)
    return {"label": "positive" if "love" in text else "neutral"}


async def entities(text: str) -> list:
    await anyio.sleep(0.4)
    return [w for w in text.split() if w[:1].isupper()]


async def topic(text: str) -> str:
    await anyio.sleep(0.2)
    if "boom" in text:
        raise ValueError("the topic model refused this text")
    return "product"


async def report(sentiment: dict, entities: list, topic: str) -> str:
    await anyio.sleep(0.1)
    return f"{sentiment['label']} about {topic}: {', '.join(entities)}"
"""

PIPELINE = """
name: review_insights
inputs:
  text: {type: string}
  gate: {type: string}
steps:
  fetch:
    uses: ./work.py:fetch
    with: {text: "${inputs.text}"}
  sentiment:
    uses: ./work.py:sentiment
    with: {text: "${steps.fetch}", gate: "${inputs.gate}"}
  entities:
    uses: ./work.py:entities
    with: {text: "${steps.fetch}"}
  topic:
    uses: ./work.py:topic
    with: {text: "${steps.fetch}"}
  report:
    uses: ./work.py:report
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "work.py").write_text(textwrap.dedent(WORK))
    (tmp_path / "review.yaml").write_text(PIPELINE)
    (tmp_path / "legato.yaml").write_text("server:\n  master_key: env:LEGATO_E2E_MASTER\npipelines: [review.yaml]\n")
    database = f"sqlite:///{tmp_path / 'legato.db'}"
    with serving(tmp_path / "legato.yaml", "--database-url", database, env={"LEGATO_E2E_MASTER": MASTER},
                 ready="/healthz") as served:  # fmt: skip
        yield served.url


def test_watch_a_run_finish_live(server: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    gate = tmp_path / "gate"
    images = DOC_IMAGES if os.environ.get("LEGATO_SCREENSHOTS") == "1" else tmp_path / "images"
    images.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.set_default_timeout(30_000)
            page.goto(f"{server}/ui/")
            expect(page).to_have_url(f"{server}/ui/login?next=/ui/")
            page.fill("input[name=key]", MASTER)
            page.click("button[type=submit]")
            expect(page.locator("h1")).to_have_text("Runs")

            text = "I love the Acme Phone but Speedy Couriers were late"
            started = httpx.post(
                f"{server}/v1/pipelines/review_insights/runs",
                json={"inputs": {"text": text, "gate": gate.name}},  # relative to the server's directory
                headers={"authorization": f"Bearer {MASTER}"},
                timeout=10,
            )
            assert started.status_code == 202, started.text
            run_id = started.json()["id"]

            row = page.locator(f'tr[data-run="{run_id}"]')  # arrives over SSE, no reload
            expect(row).to_be_visible()
            row.locator("a.mono").click()
            expect(page.locator("#run-graph")).to_be_visible()

            node = page.locator('#run-graph g.node[data-step="sentiment"]')
            expect(node).to_have_attribute("data-status", "running")
            expect(page.locator('#run-graph g.node[data-step="report"]')).to_have_attribute("data-status", "pending")
            expect(page.locator("#run-status")).to_have_attribute("data-status", "running")
            page.wait_for_selector('#run-graph g.node[data-step="entities"][data-status="succeeded"]')
            page.screenshot(path=str(images / "dashboard-run-live.png"))

            gate.write_text("go")
            expect(page.locator("#run-status")).to_have_attribute("data-status", "succeeded")
            statuses = page.locator("#run-graph g.node").evaluate_all("ns => ns.map(n => n.dataset.status)")
            assert statuses == ["succeeded"] * 5
            edges = page.locator("#run-graph path.edge").evaluate_all(
                "es => es.map(e => e.dataset.from + '>' + e.dataset.to)"
            )
            fan_out = ["fetch>sentiment", "fetch>entities", "fetch>topic"]
            fan_in = ["sentiment>report", "entities>report", "topic>report"]
            assert sorted(edges) == sorted(fan_out + fan_in)

            bars = page.locator("#run-gantt rect.bar").evaluate_all(
                "bs => Object.fromEntries(bs.map(b => [b.dataset.step, [+b.dataset.start, +b.dataset.duration]]))"
            )
            assert set(bars) == {"fetch", "sentiment", "entities", "topic", "report"}

            def overlap(a: str, b: str) -> bool:
                (sa, da), (sb, db) = bars[a], bars[b]
                return sa < sb + db and sb < sa + da

            assert overlap("sentiment", "entities")  # parallel branches drawn side by side
            assert overlap("sentiment", "topic")
            assert not overlap("fetch", "sentiment")  # a dependency ends before its dependent starts
            assert bars["report"][0] >= bars["sentiment"][0] + bars["sentiment"][1]

            page.click('#steps-box details[data-step="sentiment"] summary')
            expect(page.locator('#steps-box details[data-step="sentiment"] pre.output')).to_contain_text("positive")
            page.screenshot(path=str(images / "dashboard-run.png"), full_page=True)

            failing = httpx.post(
                f"{server}/v1/pipelines/review_insights/runs",
                json={"inputs": {"text": "boom goes the Acme Phone", "gate": gate.name}},
                headers={"authorization": f"Bearer {MASTER}"},
                timeout=10,
            )
            assert failing.status_code == 202, failing.text
            page.goto(f"{server}/ui/runs/{failing.json()['id']}")
            expect(page.locator("#run-status")).to_have_attribute("data-status", "failed")
            topic = page.locator('#run-graph g.node[data-step="topic"]')
            expect(topic).to_have_attribute("data-status", "failed")
            expect(page.locator('#steps-box details[data-step="topic"] pre.error')).to_contain_text(
                "ValueError: the topic model refused this text"
            )
            report = page.locator('#steps-box details[data-step="report"]')
            expect(report).to_have_attribute("data-status", "not_run")  # not "pending" in a run that ended
            expect(report.locator(".why-not-run")).to_contain_text("the run failed at step 'topic'")

            # A deep link opens the step it names; so does a click on its graph node.
            page.goto(f"{server}/ui/runs/{failing.json()['id']}#step-fetch")
            expect(page.locator('#steps-box details[data-step="fetch"]')).to_have_attribute("open", "")
            page.click('#run-graph g.node[data-step="report"] a')
            expect(report).to_have_attribute("open", "")
            assert page.evaluate("location.hash") == "#step-report"

            page.goto(f"{server}/ui/?pipeline=review_insights")
            expect(page.locator(f'tr[data-run="{run_id}"]')).to_have_attribute("data-status", "succeeded")
            failed_row = page.locator(f'tr[data-run="{failing.json()["id"]}"]')
            expect(failed_row).to_have_attribute("data-status", "failed")
            page.locator("main").screenshot(path=str(images / "dashboard-runs.png"))
        finally:
            browser.close()


CONTRAST_JS = """
() => {
  function rgb(c) { const m = c.match(/[\\d.]+/g); return m ? m.map(Number) : [0, 0, 0, 0]; }
  function lum([r, g, b]) {
    const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  }
  function background(el) {
    if (el instanceof SVGElement) {
      const node = el.closest('g.node');
      if (node) { return rgb(getComputedStyle(node.querySelector('rect')).fill); }
    }
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length < 4 || c[3] > 0.5) { return c; }
    }
    return [255, 255, 255];
  }
  const failures = [];
  for (const el of document.querySelectorAll('body *')) {
    const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!own) { continue; }
    const style = getComputedStyle(el);
    const box = el.getBoundingClientRect();
    if (style.visibility === 'hidden' || style.display === 'none' || box.width === 0) { continue; }
    const fg = rgb(el instanceof SVGElement ? style.fill : style.color);
    const bg = background(el);
    const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
    const ratio = (a + 0.05) / (b + 0.05);
    const size = parseFloat(style.fontSize), bold = parseInt(style.fontWeight) >= 700;
    const need = (size >= 24 || (bold && size >= 18.66)) ? 3 : 4.5;
    const what = `${el.tagName}.${el.getAttribute('class')} "${el.textContent.trim().slice(0, 30)}"`;
    if (ratio < need) { failures.push(`${what} ${ratio.toFixed(2)}`); }
  }
  return failures;
}
"""


def test_every_screen_is_readable(server: str, tmp_path: Path) -> None:
    """Phone and desktop, light and dark: no page-wide horizontal scroll, every text at
    WCAG AA contrast, status written out, focusable timeline bars, no console error."""
    from playwright.sync_api import expect, sync_playwright

    (tmp_path / "gate").write_text("go")
    auth = {"authorization": f"Bearer {MASTER}"}
    ids = []
    for text in ("I love the Acme Phone", "boom goes the Acme Phone"):
        r = httpx.post(f"{server}/v1/pipelines/review_insights/runs", headers=auth, timeout=10,
                       json={"inputs": {"text": text, "gate": "gate"}})  # fmt: skip
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    for run_id in ids:
        for _ in range(300):
            if httpx.get(f"{server}/v1/runs/{run_id}", headers=auth, timeout=5).json()["status"] != "running":
                break
            time.sleep(0.1)
    assert httpx.get(f"{server}/ui/static/favicon.svg", timeout=5).status_code == 200
    images = DOC_IMAGES if os.environ.get("LEGATO_SCREENSHOTS") == "1" else tmp_path / "images"
    images.mkdir(parents=True, exist_ok=True)
    pages = {"runs": "/ui/", "run": f"/ui/runs/{ids[1]}", "models": "/ui/models", "spend": "/ui/spend",
             "journal": "/ui/journal"}  # fmt: skip
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for (width, height), scheme in [((390, 844), "light"), ((1440, 900), "light"), ((390, 844), "dark")]:
                context = browser.new_context(viewport={"width": width, "height": height}, color_scheme=scheme,
                                              reduced_motion="reduce")  # fmt: skip
                page = context.new_page()
                errors: list[str] = []
                page.on("console", lambda m, errors=errors: errors.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
                page.on("response", lambda r, errors=errors: errors.append(r.url) if r.status >= 400 else None)
                page.goto(f"{server}/ui/login")
                page.fill("input[name=key]", MASTER)
                page.click("button[type=submit]")
                for name, path in pages.items():
                    page.goto(f"{server}{path}")
                    page.wait_for_load_state("networkidle") if name != "runs" else page.wait_for_timeout(300)
                    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
                    assert overflow <= 0, f"{name} at {width}px is {overflow}px wider than the screen"
                    failures = page.evaluate(CONTRAST_JS)
                    assert failures == [], f"{name} at {width}px ({scheme}): {failures}"
                    if name == "run":
                        bar = page.locator("#run-gantt rect.bar").first
                        bar.focus()
                        assert page.evaluate("document.activeElement.classList.contains('bar')")
                        expect(page.locator("#run-graph g.node[data-step='topic'] .glyph")).to_have_text("✗ ")
                        running = page.evaluate("getComputedStyle(document.querySelector('svg')).animationName")
                        assert running == "none"
                    if name in ("runs", "run"):  # the pages docs/observability.md shows
                        suffix = "" if scheme == "light" else "-dark"
                        page.screenshot(path=str(images / f"dashboard-{name}-{width}{suffix}.png"), full_page=True)
                assert errors == [], errors
                context.close()
        finally:
            browser.close()


def test_start_a_run_from_the_generated_form(server: str, tmp_path: Path) -> None:
    """The Start form is built from the pipeline's inputs, needs runs:write and a ticked
    confirmation, starts the run through the runs API's own start and is audited."""
    from playwright.sync_api import expect, sync_playwright

    (tmp_path / "gate").write_text("go")
    admin = {"authorization": f"Bearer {MASTER}"}
    made = httpx.post(f"{server}/v1/admin/keys", headers=admin, json={"name": "viewer", "scopes": ["runs:read"]})
    assert made.status_code == 201, made.text
    reader = made.json()["key"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.set_default_timeout(30_000)
            page.goto(f"{server}/ui/login")
            page.fill("input[name=key]", MASTER)
            page.click("button[type=submit]")
            page.click(".start-links a:has-text('review_insights')")
            expect(page.locator("h1")).to_contain_text("Start a run of review_insights")
            names = page.locator(".start-form [name^='input.']").evaluate_all("es => es.map(e => e.name)")
            assert names == ["input.text", "input.gate"]
            page.fill("[name='input.text']", "I love the Acme Phone")
            page.fill("[name='input.gate']", "gate")
            page.click(".start-form button[type=submit]")  # not confirmed: the browser keeps the form
            expect(page.locator("h1")).to_contain_text("Start a run of")
            page.check("[name=confirm]")
            page.click(".start-form button[type=submit]")
            expect(page.locator("#run-status")).to_have_attribute("data-status", "succeeded")
            run_id = page.url.rsplit("/", 1)[1]
            audit = httpx.get(f"{server}/v1/admin/audit", headers=admin, timeout=10).json()["data"]
            started = [a for a in audit if a["action"] == "run_started"]
            assert [(a["target"], a["detail"]["pipeline"]) for a in started] == [(run_id, "review_insights")]

            # A read-only key sees the form disabled and its POST refused.
            page.click("form.logout button")
            page.fill("input[name=key]", reader)
            page.click("button[type=submit]")
            page.goto(f"{server}/ui/pipelines/review_insights/start")
            expect(page.locator(".start-form button[type=submit]")).to_be_disabled()
            refused = page.request.post(f"{server}/ui/pipelines/review_insights/start",
                                        form={"input.text": "x", "input.gate": "gate", "confirm": "yes"},
                                        headers={"origin": server})  # fmt: skip
            assert refused.status == 403
            assert "runs:write" in refused.text()
        finally:
            browser.close()
