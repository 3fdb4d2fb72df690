"""``legato analyze PIPELINE|RUN_ID|SPEC.yaml``: advice from stored runs.

Per-step p50/p95 latency, error rate, cost share, the critical path, cache-hit
potential and concrete recommendations, printed and written to the journal
(``--no-journal`` to skip). A YAML spec as the target gives the dependency graph
(exact critical path); a pipeline name or run id alone infers it from timings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from legato.cli._app import app
from legato.cli._console import new_console, new_table, print_error
from legato.cli.runs import DATABASE_URL_HELP, open_store

if TYPE_CHECKING:
    from legato.observe import Analysis
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
) -> None:
    """Where the time and money of a pipeline's runs go, and what to change."""
    import anyio

    analysis = anyio.run(_analyze, target, last, database_url, config, journal)
    if as_json:
        typer.echo(json.dumps(analysis.to_dict(), indent=2))
    else:
        _print(analysis)


async def _analyze(target: str, last: int, database_url: str | None, config: Path | None, journal: bool) -> Analysis:
    from legato.errors import AmbiguousRunId, RunNotFound
    from legato.observe import analyze_runs
    from legato.spec._python import is_pipeline_ref

    graph: dict[str, list[str]] | None = None
    single: str | None = None
    async with open_store(database_url) as store:
        if target.endswith((".yaml", ".yml")) or is_pipeline_ref(target):
            name, graph = _spec(Path(target), config)
            records = await store.list_runs(pipeline=name, limit=last)
        else:
            try:
                run = await store.get_run(target)
            except RunNotFound as exc:
                name = target
                records = await store.list_runs(pipeline=name, limit=last)
                if not records:
                    why = str(exc) if isinstance(exc, AmbiguousRunId) else f"no run with id {target!r}"
                    print_error(f"{why} and no stored runs of a pipeline {target!r}")
                    raise typer.Exit(2) from None
            else:
                name, records, single = run.pipeline, [run], run.id
        runs = [(r, await store.steps(r.id)) for r in records]
        analysis = analyze_runs(name, runs, graph)
        if journal and runs and store.read_only:
            _err.print("[dim]the store is read-only: this analysis is not written to the journal[/dim]")
        elif journal and runs:
            await _write_journal(store, analysis, single)
    return analysis


def _spec(path: Path, config: Path | None) -> tuple[str, dict[str, list[str]]]:
    from legato.config import LegatoConfig
    from legato.errors import ConfigError, SpecError
    from legato.spec import load_pipeline
    from legato.spec._python import is_pipeline_ref

    if not path.exists() and not is_pipeline_ref(path):
        print_error(f"spec file not found: {path}")
        raise typer.Exit(2)
    try:
        pipeline = load_pipeline(path, config=LegatoConfig.load(config, spec=path))
        plan = pipeline.compile()
    except (ConfigError, SpecError) as exc:
        print_error(str(exc))
        raise typer.Exit(2) from None
    return pipeline.name, {n: sorted(s.deps) for n, s in plan.steps.items()}


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
        _out.print(f"  - {r}", soft_wrap=True)
