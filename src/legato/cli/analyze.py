"""``legato analyze PIPELINE|RUN_ID|SPEC.yaml``: advice from stored runs.

Per-step p50/p95 latency, error rate, cost share, the critical path, cache-hit
potential and concrete recommendations, printed and written to the journal
(``--no-journal`` to skip). The dependency graph comes from the spec file when one
is given, otherwise from the ``pipelines:`` section of legato.yaml or the spec file
the runs were started from, so a name, a run id and a file give the same critical
path; only when none of them is available is it inferred from timings.
``--options`` adds alternatives predicted by simulation over the same runs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from legato.cli._app import app
from legato.cli._console import fail, new_console, new_table, print_error
from legato.cli._loop import run_loop
from legato.cli.runs import DATABASE_URL_HELP, open_store

if TYPE_CHECKING:
    from legato.observe import Analysis, OptionsReport, StepShape
    from legato.store import RunStore

__all__ = ["analyze"]

_out = new_console()
_err = new_console(stderr=True)


@app.command()
def analyze(
    target: str = typer.Argument(..., help="A pipeline name, a run id, or a pipeline spec file (YAML)."),
    last: int = typer.Option(50, "--last", "-n", min=1, max=10_000, help="How many recent runs of the pipeline."),
    database_url: str | None = typer.Option(None, "--database-url", help=DATABASE_URL_HELP),
    config: Path | None = typer.Option(None, "--config", "-c", help="legato.yaml (for a spec file's step kinds)."),
    as_json: bool = typer.Option(False, "--json", help="Print the analysis as JSON."),
    journal: bool = typer.Option(True, "--journal/--no-journal", help="Write the analysis to the journal."),
    options: bool = typer.Option(False, "--options", help="Alternatives with predicted latency, cost, success."),
    volume: str = typer.Option("100000/month", "--volume", help="Runs per month (or N/day, N/hour) for costs."),
    seed: int = typer.Option(0, "--seed", help="Seed of the simulation (the same seed, the same prediction)."),
) -> None:
    """Where the time and money of a pipeline's runs go, and what to change."""

    from legato.observe import parse_volume

    try:
        per_month = parse_volume(volume)
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    analysis, report = run_loop(_analyze, target, last, database_url, config, journal, (options, per_month, seed))
    if as_json:
        data = analysis.to_dict()
        if report is not None:
            data["options"] = report.to_dict()
        typer.echo(json.dumps(data, indent=2))
    else:
        _print(analysis)
        if report is not None:
            _print_options(report)


async def _analyze(
    target: str,
    last: int,
    database_url: str | None,
    config: Path | None,
    journal: bool,
    what_if: tuple[bool, float, int],
) -> tuple[Analysis, OptionsReport | None]:
    from legato.errors import AmbiguousRunId, RunNotFound
    from legato.observe import analyze_runs, build_options
    from legato.spec._python import is_pipeline_ref

    graph: dict[str, list[str]] | None = None
    shapes: dict[str, StepShape] | None = None
    single: str | None = None
    async with open_store(database_url) as store:
        if target.endswith((".yaml", ".yml")) or is_pipeline_ref(target):
            name, graph, shapes = _spec(Path(target), config)
            records = await store.list_runs(pipeline=name, limit=last)
        else:
            try:
                run = await store.get_run(target)
            except RunNotFound as exc:
                name = target
                records = await store.list_runs(pipeline=name, limit=last)
                if not records:
                    why = str(exc) if isinstance(exc, AmbiguousRunId) else f"no run with id {target!r}"
                    raise fail(f"{why} and no stored runs of a pipeline {target!r}", 2) from None
            else:
                name, records, single = run.pipeline, [run], run.id
            graph, shapes = _known_graph(name, records, config)
        runs = [(r, await store.steps(r.id)) for r in records]
        analysis = analyze_runs(name, runs, graph, shapes=shapes)
        if journal and runs and store.read_only:
            _err.print("[dim]the store is read-only: this analysis is not written to the journal[/dim]")
        elif journal and runs:
            await _write_journal(store, analysis, single)
    wanted, per_month, seed = what_if
    if not wanted:
        return analysis, None
    if graph is None or shapes is None:
        print_error(
            f"--options needs the graph of pipeline {name!r}: give its spec file, or list it under "
            "pipelines: in legato.yaml"
        )
        raise typer.Exit(2)
    if not runs:
        raise fail(f"--options needs stored runs of pipeline {name!r}; none found", 2)
    return analysis, build_options(analysis, runs, graph, shapes, volume_per_month=per_month, seed=seed)


Graph = dict[str, list[str]]


def _spec(path: Path, config: Path | None) -> tuple[str, Graph, dict[str, StepShape]]:
    from legato.cli._load import load_pipeline_file  # the one spec loader of the CLI (errors exit 2)
    from legato.spec._python import is_pipeline_ref

    if not path.exists() and not is_pipeline_ref(path):
        raise fail(f"spec file not found: {path}", 2)
    pipeline = load_pipeline_file(path, config)
    graph, shapes = _shape(pipeline)
    return pipeline.name, graph, shapes


def _shape(pipeline: object) -> tuple[Graph, dict[str, StepShape]]:
    from legato.observe import step_shapes

    shapes = step_shapes(pipeline)
    return {n: list(s.deps) for n, s in shapes.items()}, shapes


def _known_graph(
    name: str, records: Sequence[object], config: Path | None
) -> tuple[Graph | None, dict[str, StepShape] | None]:
    """The graph of pipeline ``name``: from ``pipelines:`` in legato.yaml, else from the
    spec file its newest run was started from; (None, None) when neither is available."""
    from legato.config import LegatoConfig
    from legato.errors import ConfigError, SpecError
    from legato.spec import load_pipeline
    from legato.spec._python import is_pipeline_ref

    try:
        cfg = LegatoConfig.load(config)
        if cfg.raw("pipelines") is not None:
            from legato.server._runs import load_pipelines

            served = load_pipelines(cfg)
            if name in served:
                return _shape(served[name])
        for record in records:
            source = getattr(record, "source", None)
            if source and (Path(source).is_file() or is_pipeline_ref(source)):
                pipeline = load_pipeline(Path(source), config=LegatoConfig.load(config, spec=Path(source)))
                if pipeline.name == name:
                    return _shape(pipeline)
                break
    except (ConfigError, SpecError, OSError) as exc:
        _err.print(f"[dim]the graph of {name} could not be loaded ({type(exc).__name__}); inferring it[/dim]")
    return None, None


async def _write_journal(store: RunStore, analysis: Analysis, run_id: str | None) -> None:
    from legato.errors import StoreError
    from legato.store import Journal

    what = f"run {run_id}" if run_id else f"{analysis.runs} run(s)"
    try:
        await Journal(store).add(
            f"Analysis of {analysis.pipeline} ({what})",
            analysis.to_markdown(),
            tags=["analysis", analysis.pipeline],
            pipeline=analysis.pipeline,
            run_id=run_id,
            author="auto",
        )
    except StoreError as exc:  # the analysis itself stands: say why it was not recorded
        print_error(f"the analysis was not written to the journal: {exc}")


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _print(a: Analysis) -> None:
    _out.print(
        f"[bold]{a.pipeline}[/bold]: {a.runs} run(s), {a.succeeded_runs} succeeded, {a.failed_runs} failed; "
        f"cost ${a.total_cost:.6f}; wall p50 {_ms(a.wall_p50_s)}, p95 {_ms(a.wall_p95_s)}"
    )
    table = new_table(show_edge=False, header_style="bold")
    for col in ("step", "attempts", "errors", "p50", "p95", "cost", "share", "cache-hit potential"):
        table.add_column(col, justify="left" if col == "step" else "right")
    path = set(a.critical_path)
    for s in a.steps:
        table.add_row(
            ("* " if s.step in path else "  ") + s.step,
            str(s.attempts),
            f"{s.error_rate:.0%}",
            _ms(s.p50_s),
            _ms(s.p95_s),
            f"${s.cost:.6f}",
            f"{s.cost_share:.0%}",
            f"{s.cache_hit_potential:.0%}",
        )
    _out.print(table)
    how = "from the graph" if a.graph_known else "inferred from timings"
    _out.print(f"critical path ({how}, * above): {' -> '.join(a.critical_path) or '-'} ({_ms(a.critical_path_s)})")
    _out.print("[bold]recommendations[/bold]")
    for r in a.recommendations or ["none: nothing stands out in these runs."]:
        _out.print(f"  - {r}", soft_wrap=True, markup=False)


def _print_options(r: OptionsReport) -> None:
    m, p, e = r.measured, r.predicted_today, r.error
    per = f"{r.volume_per_month:,.0f} runs/month"
    _out.print(
        f"[bold]options[/bold] ({r.runs} run(s) simulated; costs per run and per month at {per})", soft_wrap=True
    )
    table = new_table(show_edge=False, header_style="bold")
    for col in ("#", "option", "p50", "p95", "success", "cost/run", "cost/month"):
        table.add_column(col, justify="left" if col == "option" else "right")
    table.add_row("", "today, measured", _ms(m.p50_s), _ms(m.p95_s), f"{m.success_rate:.1%}",
                  f"${m.cost_per_run:.6f}", f"${m.cost_per_run * r.volume_per_month:,.2f}")  # fmt: skip
    table.add_row("", "today, predicted", _ms(p.p50_s), _ms(p.p95_s), f"{p.success_rate:.1%}",
                  f"${p.cost_per_run:.6f}", f"${p.cost_per_run * r.volume_per_month:,.2f}")  # fmt: skip
    for i, o in enumerate(r.options, 1):
        q = o.predicted
        table.add_row(str(i), o.title, _ms(q.p50_s), _ms(q.p95_s), f"{q.success_rate:.1%}",
                      f"${q.cost_per_run:.6f}", f"${o.cost_per_month:,.2f}")  # fmt: skip
    _out.print(table)
    _out.print(
        f"prediction error on today's configuration: p50 {e['p50']:+.1%}, p95 {e['p95']:+.1%}, "
        f"success {e['success_points']:+.1f} points",
        markup=False,
    )
    if not r.options:
        _out.print("  no alternative applies to this pipeline's configuration and runs.")
    for i, o in enumerate(r.options, 1):
        _out.print(f"\n{i}. {o.title}\n   risk: {o.risk}", markup=False, soft_wrap=True)
        for line in o.yaml.splitlines():
            _out.print(f"     {line}", markup=False, soft_wrap=True)
