"""``legato bench PIPELINE --rate R/s --duration D``: an open-loop load test.

Runs start on a fixed schedule (``--rate``) for ``--duration``, in this process
(recorded in a throw-away SQLite store unless ``--database-url``) or against a
gateway's runs API (``--url``, ``--key``); each run's latency counts from when it
was due, so a stall shows as queueing delay (see :mod:`legato.observe._load`).
Reports p50/p95/p99, throughput, error rate, cost per run, SLO pass/fail
(``--slo p95=2s``; exit 1 when one fails) and the capacity per worker with the
replicas a ``--target`` rate needs. With the runs in a store it reads, the report
adds the options of ``legato analyze --options`` computed from the test's own
runs, and ``--plot FILE.svg`` draws latency over the test and the options'
latency-cost frontier. A progress bar on a terminal; only results in a pipe.
Bad arguments, a missing pipeline and an unreachable ``--url`` exit 2.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from legato.cli._app import app
from legato.cli._console import fail, new_console, new_table, print_error
from legato.cli._loop import run_loop
from legato.cli.runs import DATABASE_URL_HELP, load_pipeline_file, open_store

if TYPE_CHECKING:
    import httpx

    from legato.engine import Pipeline
    from legato.observe import Fire, LoadReport, Sample
    from legato.store import RunStore

__all__ = ["bench"]

_out = new_console()
_err = new_console(stderr=True)


@dataclass(frozen=True)
class _Plan:
    rate: float
    duration: float
    slos: list[Any]
    inputs: list[dict[str, Any]]
    target_rate: float | None
    warmup: int
    max_in_flight: int


@app.command()
def bench(
    pipeline: str = typer.Argument(..., help="A spec file, an import path or a name under pipelines: in legato.yaml."),
    rate: str = typer.Option(..., "--rate", "-r", help="Runs started per second (10/s, 120/m or a number)."),
    duration: str = typer.Option("30s", "--duration", "-d", help="How long to start runs (30s, 2m, 500ms)."),
    slo: list[str] = typer.Option([], "--slo", help="Objectives: p95=2s, p99=800ms, errors=1% (repeatable)."),
    inputs: Path | None = typer.Option(None, "--inputs", help="A JSONL file of run inputs, used in turn."),
    url: str | None = typer.Option(None, "--url", help="A gateway to load through its runs API."),
    key: str | None = typer.Option(None, "--key", envvar="LEGATO_API_KEY", help="The gateway API key (runs:write)."),
    target: str | None = typer.Option(None, "--target", help="A rate to size for: replicas needed (R/s)."),
    database_url: str | None = typer.Option(None, "--database-url", help=DATABASE_URL_HELP),
    config: Path | None = typer.Option(None, "--config", "-c", help="legato.yaml (models, step kinds)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    plot: Path | None = typer.Option(None, "--plot", help="Write the plot as SVG to this file."),
    warmup: int = typer.Option(1, "--warmup", min=0, max=1000, help="Runs before the clock starts (load models)."),
    max_in_flight: int = typer.Option(1000, "--max-in-flight", min=1, max=100_000, help="Runs in flight at most."),
) -> None:
    """Load-test a pipeline at a fixed rate: latency from each run's intended start, SLOs, capacity."""
    plan = _plan(rate, duration, slo, inputs, target, warmup, max_in_flight)
    if url is None:
        report = run_loop(_in_process, _load(Path(pipeline), config), plan, database_url)
    else:
        report = run_loop(_through_gateway, _served(pipeline, config), url.rstrip("/"), key, plan, database_url)
    if plot is not None:
        from legato.observe import write_svg

        write_svg(report, plot)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        _print(report, plot)
    if not report.slo_passed:
        raise typer.Exit(1)


def _plan(
    rate: str, duration: str, slo: list[str], inputs: Path | None, target: str | None, warmup: int, cap: int
) -> _Plan:
    from legato.observe import parse_duration, parse_rate, parse_slos

    try:
        return _Plan(
            rate=parse_rate(rate),
            duration=parse_duration(duration),
            slos=parse_slos(slo),
            inputs=_inputs(inputs),
            target_rate=parse_rate(target) if target is not None else None,
            warmup=warmup,
            max_in_flight=cap,
        )
    except ValueError as exc:
        raise fail(str(exc), 2) from None


def _inputs(path: Path | None) -> list[dict[str, Any]]:
    """One JSON object per line (blank lines skipped); no file: one run with the defaults."""
    if path is None:
        return [{}]
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ValueError(f"--inputs {path}: {exc.strerror or exc}") from None
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"--inputs {path}:{number}: not JSON ({exc})") from None
        if not isinstance(value, dict):
            raise ValueError(f"--inputs {path}:{number}: expected a JSON object of inputs")
        out.append(value)
    if not out:
        raise ValueError(f"--inputs {path}: no inputs in the file")
    return out


def _load(path: Path, config: Path | None) -> Pipeline:
    """A spec file, an import path, or the name of a pipeline under ``pipelines:`` in legato.yaml."""
    from legato.spec._python import is_pipeline_ref

    if path.exists() or is_pipeline_ref(path):
        return load_pipeline_file(path, config)
    served = _configured(str(path), config)
    if served is None:
        print_error(
            f"pipeline not found: {path} (a spec file, module:attribute, or a name under pipelines: "
            "in legato.yaml; with --url, a served name)"
        )
        raise typer.Exit(2)
    return served


def _configured(name: str, config: Path | None) -> Pipeline | None:
    from legato.config import LegatoConfig
    from legato.errors import ConfigError
    from legato.server._runs import load_pipelines

    try:
        cfg = LegatoConfig.load(config)
        pipelines = load_pipelines(cfg) if cfg.raw("pipelines") is not None else {}
    except ConfigError as exc:
        raise fail(str(exc), 2) from None
    found: Pipeline | None = pipelines.get(name)
    return found


def _served(pipeline: str, config: Path | None) -> tuple[str, Pipeline | None]:
    """With --url, a served name, or a spec file standing for the pipeline of its name."""
    path = Path(pipeline)
    if path.suffix in (".yaml", ".yml"):
        loaded = _load(path, config)
        return loaded.name, loaded
    return pipeline, None


@asynccontextmanager
async def _store(database_url: str | None) -> AsyncIterator[RunStore]:
    """The store runs are recorded in: ``--database-url``, else a throw-away SQLite file."""
    if database_url is not None:
        async with open_store(database_url, create=True) as store:
            yield store
        return
    with tempfile.TemporaryDirectory(prefix="legato-bench-") as tmp:
        async with open_store(f"sqlite:///{Path(tmp) / 'bench.db'}", create=True) as store:
            yield store


async def _in_process(pipeline: Pipeline, plan: _Plan, database_url: str | None) -> LoadReport:
    from legato.errors import InputError, LegatoError
    from legato.observe import Outcome
    from legato.store import DurableRunner

    async with _store(database_url) as store:
        runner = DurableRunner(store, reflect=None)

        async def fire(values: dict[str, Any]) -> Outcome:
            result = await runner.run(pipeline, values)
            return Outcome(result.ok, result.cost or 0.0, result.error, result.run_id)

        try:
            await _warm_up(fire, plan)
        except InputError as exc:
            raise fail(f"the pipeline refused the inputs: {exc}", 2) from None
        except LegatoError as exc:  # a missing secret, a store that cannot write: nothing to measure
            raise fail(f"the warm-up run could not start: {type(exc).__name__}: {exc}", 1) from None
        cpu = time.process_time()
        samples = await _measure(fire, plan)
        report = _summarize(samples, pipeline.name, "in-process", plan, time.process_time() - cpu)
        report.options = await _options(store, pipeline, samples)
        return report


async def _warm_up(fire: Fire, plan: _Plan) -> None:
    """Runs before the clock starts: local models load, connections open. A failed warm-up run
    that is the caller's mistake (bad inputs, an unknown pipeline, a refused key) stops the test."""
    for i in range(plan.warmup):
        outcome = await fire(plan.inputs[i % len(plan.inputs)])
        if outcome.http_status is not None and 400 <= outcome.http_status < 500:
            raise fail(f"the gateway refused the warm-up run: {outcome.error}", 2)


async def _measure(fire: Fire, plan: _Plan) -> list[Sample]:
    from legato.observe import run_open_loop

    progress, advance = _progress(round(plan.rate * plan.duration))
    with progress:
        return await run_open_loop(
            fire,
            rate=plan.rate,
            duration=plan.duration,
            inputs=plan.inputs,
            on_done=advance,
            drain_s=max(30.0, plan.duration),
            max_in_flight=plan.max_in_flight,
        )


def _progress(total: int) -> tuple[AbstractContextManager[Any], Callable[[Sample], None]]:
    """A progress bar on a terminal's stderr; nothing elsewhere."""
    if not _err.is_terminal:
        return nullcontext(), lambda _: None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("runs"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=_err)
    task = bar.add_task("runs", total=max(1, total))
    return bar, lambda _: bar.advance(task)


def _summarize(samples: list[Sample], name: str, where: str, plan: _Plan, cpu_s: float | None) -> LoadReport:
    from legato.observe import summarize

    return summarize(
        samples,
        pipeline=name,
        target=where,
        rate=plan.rate,
        duration=plan.duration,
        slos=plan.slos,
        cpu_s=cpu_s,
        target_rate=plan.target_rate,
    )


async def _options(store: RunStore, pipeline: Pipeline, samples: list[Sample]) -> list[dict[str, Any]]:
    """``legato analyze --options`` over the test's own runs: the frontier of the plot."""
    from legato.errors import RunNotFound
    from legato.observe import analyze_runs, build_options, step_shapes

    runs = []
    for s in samples:
        if s.run_id is None:
            continue
        try:
            record = await store.get_run(s.run_id)
        except RunNotFound:
            continue
        runs.append((record, await store.steps(record.id)))
    if len(runs) < 5:
        return []
    shapes = step_shapes(pipeline)
    graph = {n: list(shape.deps) for n, shape in shapes.items()}
    analysis = analyze_runs(pipeline.name, runs, graph, shapes=shapes)
    report = build_options(analysis, runs, graph, shapes)
    return [{"title": o.title, "kind": o.kind, **o.predicted.to_dict()} for o in report.options]


async def _through_gateway(
    served: tuple[str, Pipeline | None], url: str, key: str | None, plan: _Plan, database_url: str | None
) -> LoadReport:
    """The test through the gateway's runs API. Given its store (``--database-url``) and the
    pipeline's spec file, the report also has the options computed from the runs just made."""
    import httpx

    name, pipeline = served
    limits = httpx.Limits(max_connections=plan.max_in_flight, max_keepalive_connections=min(100, plan.max_in_flight))
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    timeout = httpx.Timeout(30.0, read=None)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=timeout) as client:
        await _reachable(client, url)
        fire = _gateway_fire(client, name)
        try:
            await _warm_up(fire, plan)
        except httpx.HTTPError as exc:
            print_error(f"the gateway at {url} dropped the warm-up run: {type(exc).__name__}: {exc}")
            raise typer.Exit(1) from None
        cpu = await _server_cpu(client)
        samples = await _measure(fire, plan)
        after = await _server_cpu(client)
        samples = await _with_costs(client, samples)
    used = after - cpu if cpu is not None and after is not None else None
    report = _summarize(samples, name, url, plan, used)
    if database_url is not None and pipeline is not None:
        async with open_store(database_url) as store:
            report.options = await _options(store, pipeline, samples)
    return report


async def _reachable(client: httpx.AsyncClient, url: str) -> None:
    import httpx

    try:
        response = await client.get("/healthz", timeout=10)
    except httpx.HTTPError as exc:
        raise fail(f"cannot reach the gateway at {url}: {type(exc).__name__}: {exc}", 2) from None
    if response.status_code != 200:
        raise fail(f"{url}/healthz answered {response.status_code}: is it a legato gateway?", 2)


def _gateway_fire(client: httpx.AsyncClient, name: str) -> Fire:
    """One run through the runs API: start it, then follow its events until the end event."""
    from legato.observe import Outcome

    async def fire(values: dict[str, Any]) -> Outcome:
        response = await client.post(f"/v1/pipelines/{name}/runs", json={"inputs": values})
        if response.status_code >= 400:
            error = f"HTTP {response.status_code}: {_message(response)}"
            return Outcome(False, error=error, served=False, http_status=response.status_code)
        run_id = str(response.json()["id"])
        status = await _final_status(client, run_id)
        ended = status in ("succeeded", "failed", "cancelled")  # else the stream was refused or cut
        return Outcome(status == "succeeded", 0.0, None if status == "succeeded" else f"run {status}", run_id, ended)

    return fire


def _message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error", {})
    except ValueError:
        return response.text[:200]
    return str(error.get("message", error) if isinstance(error, dict) else error)[:200]


async def _final_status(client: httpx.AsyncClient, run_id: str) -> str:
    async with client.stream("GET", f"/v1/runs/{run_id}/events") as response:
        if response.status_code >= 400:
            return f"unreadable (HTTP {response.status_code})"
        event = ""
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                event = line[7:].strip()
            elif line.startswith("data: ") and event == "end":
                return str(json.loads(line[6:]).get("status", "unknown"))
    return "unknown (the event stream ended early)"


async def _with_costs(client: httpx.AsyncClient, samples: list[Sample]) -> list[Sample]:
    """Each run's cost, read after the test (16 reads at a time) so no read counts in a latency."""
    import anyio
    import httpx

    costs: dict[str, float] = {}
    limiter = anyio.CapacityLimiter(16)

    async def read(run_id: str) -> None:
        async with limiter:
            try:
                response = await client.get(f"/v1/runs/{run_id}")
            except httpx.HTTPError:  # the gateway went away after the test: that run's cost is unknown (0)
                return
        if response.status_code == 200:
            costs[run_id] = float(response.json().get("cost") or 0.0)

    async with anyio.create_task_group() as tg:
        for s in samples:
            if s.run_id is not None:
                tg.start_soon(read, s.run_id)
    return [replace(s, cost=costs.get(s.run_id or "", 0.0)) for s in samples]


async def _server_cpu(client: httpx.AsyncClient) -> float | None:
    """The gateway process's CPU seconds from its /metrics (None when it does not export them)."""
    import httpx

    try:
        response = await client.get("/metrics", timeout=10)
    except httpx.HTTPError:
        return None
    for line in response.text.splitlines():
        if line.startswith("process_cpu_seconds_total "):
            return float(line.split()[1])
    return None


def _ms(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _print(r: LoadReport, plot: Path | None) -> None:
    _out.print(
        f"[bold]{r.pipeline}[/bold] ({r.target}): {r.runs} runs at {r.rate:g}/s over {r.duration:g} s; "
        f"{r.succeeded} succeeded, error rate {r.error_rate:.2%}; throughput {r.throughput:.2f} runs/s "
        f"({r.goodput:.2f} succeeded/s)"
    )
    table = new_table(show_edge=False, header_style="bold")
    for col in ("p50", "p95", "p99", "max", "start lag p99", "cost/run"):
        table.add_column(col, justify="right")
    table.add_row(_ms(r.p50_s), _ms(r.p95_s), _ms(r.p99_s), _ms(r.max_s), _ms(r.start_lag_p99_s),
                  f"${r.cost_per_run:.6f}")  # fmt: skip
    _out.print(table)
    _out.print("latency counts from each run's intended start (queueing included)", style="dim")
    for s in r.slos:
        measured = f"{s.measured:.2%}" if s.name == "errors" else _ms(s.measured or 0.0)
        verdict = "[green]pass[/green]" if s.passed else "[red]FAIL[/red]"
        _out.print(f"SLO {s.describe()}: {measured} {verdict}")
    _print_capacity(r)
    if r.errors:
        _out.print("errors: " + ", ".join(f"{k} x{v}" for k, v in r.errors.items()), markup=False)
    for i, o in enumerate(r.options, 1):
        _out.print(f"option {i}: {o['title']}: p95 {_ms(o['p95_s'])}, ${o['cost_per_run']:.6f}/run", markup=False)
    if plot is not None:
        _out.print(f"plot written to {plot}", markup=False)


def _print_capacity(r: LoadReport) -> None:
    c = r.capacity
    if c.per_worker is None:
        _out.print("capacity: unknown (no run succeeded)")
        return
    how = {
        "saturated": "measured: the runs fell behind the schedule",
        "cpu": "estimated from CPU time per run (one core per worker)",
        "lower bound": "a lower bound: the runs kept up",
    }[c.basis]
    line = f"capacity: {c.per_worker:.2f} runs/s per worker ({how})"
    if c.cpu_per_run_s is not None:
        line += f"; {c.cpu_per_run_s * 1000:.1f} ms CPU per run"
    if c.replicas is not None and c.target_rate is not None:
        line += f"; {c.replicas} replica(s) for {c.target_rate:g} runs/s"
    _out.print(line)
