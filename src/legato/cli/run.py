"""``legato run``, ``legato validate`` and ``legato plan``.

Exit codes: 0 success (or, with ``--no-wait``, the idempotency key's run is still in
progress elsewhere), 1 the run failed (or was cancelled), 2 invalid spec,
inputs or usage, 130 the run was cancelled by Ctrl-C (see :mod:`legato.cli._interrupt`).
Heavy imports (the engine, pydantic models) happen inside the
commands so ``legato --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Awaitable, Callable
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape

from legato.cli._app import app
from legato.cli._console import enum_parser, fail, new_console, new_table, print_error, styled
from legato.cli._load import load_pipeline_file
from legato.cli._loop import run_loop

if TYPE_CHECKING:
    from legato.cli._interrupt import Interrupt
    from legato.engine import Event, Pipeline, PlanSummary, RunResult

__all__ = ["plan", "run", "validate"]

_err = new_console(stderr=True)
_CONFIG_HELP = "legato.yaml (default: $LEGATO_CONFIG, then legato.yaml beside the pipeline file, then ./legato.yaml)."


def _parse_inputs(pipeline: Pipeline, pairs: list[str], inputs_file: Path | None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if inputs_file is not None:
        try:
            loaded = json.loads(inputs_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise fail(f"--inputs-file {inputs_file}: {exc}", 2) from None
        if not isinstance(loaded, dict):
            raise fail(f"--inputs-file {inputs_file}: must hold a JSON object", 2)
        values.update(loaded)
    declared = pipeline.inputs
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise fail(f"--input expects key=value, got {pair!r}", 2)
        decl = declared.get(key)
        if decl is not None and decl.type is str:
            values[key] = raw
        else:
            try:
                values[key] = json.loads(raw)
            except json.JSONDecodeError:
                values[key] = raw
    return values


@app.command()
def run(
    file: Path = typer.Argument(..., help="Pipeline YAML file, or module:pipeline naming a Python Pipeline."),
    input: list[str] = typer.Option([], "--input", "-i", help="Input as key=value (repeatable; JSON values)."),
    inputs_file: Path | None = typer.Option(None, "--inputs-file", help="JSON object of inputs."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    config: Path | None = typer.Option(None, "--config", help=_CONFIG_HELP),
    idempotency_key: str | None = typer.Option(
        None, "--idempotency-key", help="Same key and inputs: return (or resume) the existing run instead of a new one."
    ),
    no_wait: bool = typer.Option(
        False,
        "--no-wait",
        help="When the idempotency key's run is in progress elsewhere, print its id and status and exit 0 "
        "instead of waiting for its result.",
    ),
    queue: str | None = typer.Option(
        None,
        "--queue",
        help="Enqueue the run on this queue for a `legato worker` instead of running it here "
        "(default: the queue whose `pipelines:` in legato.yaml names this pipeline). Prints the run id; "
        "waits for the result unless --no-wait.",
    ),
    priority: int = typer.Option(
        0,
        "--priority",
        help="Priority of the queued run in its queue: higher is claimed first (within per-key fairness).",
    ),
    tag: list[str] = typer.Option(
        [], "--tag", help="Label the run (repeatable); find it with `legato runs list --tag` or the dashboard."
    ),
    recall: bool = typer.Option(False, "--recall", help="Print the most related journal entries before running."),
    database_url: str | None = typer.Option(
        None, "--database-url", help="Run store: SQLite path or postgresql://HOST/DB (default ./.legato/legato.db)."
    ),
    executor: str | None = typer.Option(
        None, "--executor", help="Where steps run: local or ray (overrides the pipeline's `executor:`)."
    ),
    executor_option: list[str] = typer.Option(
        [], "--executor-option", help="Executor option as key=value (repeatable; JSON values), e.g. address=HOST:PORT."
    ),
    stream: bool = typer.Option(
        False, "--stream", help="Print the model tokens of llm: steps as they arrive, labelled by step."
    ),
) -> None:
    """Run a pipeline: independent steps run in parallel; live progress on a terminal.

    The run is stored and checkpointed step by step: after a crash, `legato runs
    resume RUN_ID` finishes it without redoing finished steps. Ctrl-C cancels the
    run (it is stored as cancelled; Ctrl-C again exits at once)."""

    pipeline, values = _prepare(file, config, executor, executor_option, input, inputs_file)
    tags = _tags(tag)
    out = new_console()
    progress = _Progress(pipeline, out) if out.is_terminal and not as_json and not stream else None
    tokens = _token_printer(as_json) if stream else None
    from legato.cli._interrupt import Interrupt
    from legato.cli.runs import stored_run
    from legato.engine import RunControl
    from legato.spec._python import is_pipeline_ref
    from legato.store import new_run_id

    interrupt = Interrupt(RunControl(), new_run_id())
    source = pipeline.source if is_pipeline_ref(str(file)) and pipeline.source else str(file.resolve())
    queue = queue if queue is not None else _default_queue(config, pipeline.name)
    if queue is not None:
        _run_queued(
            pipeline,
            values,
            (queue, priority, tags),
            source,
            interrupt,
            database_url,
            idempotency_key,
            no_wait,
            as_json,
        )
    if priority:
        print_error(
            "--priority orders queued runs: pass --queue NAME (or enqueue the pipeline by default in legato.yaml)"
        )
        raise typer.Exit(2)

    run_here = partial(
        stored_run,
        pipeline,
        values,
        subscribers=[progress.on_event] if progress is not None else [],
        progress=progress,
        console=out,
        database_url=database_url,
        idempotency_key=idempotency_key,
        recall=recall and not as_json,
        source=source,
        control=interrupt.control,
        run_id=interrupt.run_id,
        wait=not no_wait,
        on_wait=interrupt.waiting,
        tags=tags,
    )
    result = _run_in_loop(run_here, interrupt, tokens, as_json)
    if str(result.status) == "running":  # --no-wait: the run goes on in another process
        _report_elsewhere(result, as_json)
        raise typer.Exit(0)
    _finish(result, as_json, out, interrupt)


def _tags(given: list[str]) -> tuple[str, ...]:
    """``--tag`` values as the store keeps them (2 for one it refuses, naming it)."""
    from legato.store._search import check_tags

    try:
        return check_tags(given)
    except ValueError as exc:
        raise fail(f"--tag: {exc}", 2) from None


def _prepare(
    file: Path,
    config: Path | None,
    executor: str | None,
    executor_option: list[str],
    pairs: list[str],
    inputs_file: Path | None,
) -> tuple[Pipeline, dict[str, Any]]:
    """The pipeline (on the executor asked for) and its inputs, checked before
    anything is stored or run (2 for a bad spec or bad inputs)."""
    from legato.errors import InputError

    pipeline = load_pipeline_file(file, config, check_secrets=True)
    if executor is not None or executor_option:
        _choose_executor(pipeline, executor, executor_option)
    values = _parse_inputs(pipeline, pairs, inputs_file)
    try:
        pipeline.check_inputs(values)
    except InputError as exc:
        raise fail(str(exc), 2) from None
    return pipeline, values


def _run_in_loop(
    run_here: Callable[[], Awaitable[RunResult]], interrupt: Interrupt, tokens: Any, as_json: bool
) -> RunResult:
    """Run ``run_here`` on the command's event loop with Ctrl-C handled by
    ``interrupt`` and, with ``--stream``, the model tokens printed by ``tokens``."""
    from legato.errors import InputError

    async def main() -> RunResult:
        from legato.engine import stream_tokens

        streaming = stream_tokens(tokens) if tokens is not None else contextlib.nullcontext()
        with interrupt.installed(), streaming:
            return await run_here()

    # With --json, stdout carries the JSON document only: whatever libraries print
    # while the run goes on (Ray's worker messages, for one) goes to stderr.
    quiet = contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()
    try:
        with quiet:
            return run_loop(main)
    except InputError as exc:
        raise fail(str(exc), 2) from None
    finally:
        if tokens is not None:
            tokens.end_line()


def _finish(result: RunResult, as_json: bool, out: Console, interrupt: Any = None) -> None:
    """Print the result (JSON or a table) and exit with the run's code."""
    from legato.cli._interrupt import EXIT_INTERRUPTED, exit_now

    if as_json:
        doc: dict[str, Any] = {
            "run_id": result.run_id,
            "status": str(result.status),
            "outputs": result.result,
            "duration_s": round(result.duration_s, 6),
        }
        if result.waiting:
            doc["waiting"] = result.waiting
        elif not result.ok:
            doc["error"] = result.error
            doc["failed_step"] = result.failed_step
            doc["errors"] = {**result.errors, **result.failures}
            doc["step_outputs"] = result.outputs  # what the steps that succeeded returned
        sys.stdout.write(json.dumps(doc, default=_json_default, indent=2) + "\n")
    else:
        _print_result(out, result)
    code = 0 if result.ok or result.waiting else 1  # a waiting run is paused, not failed
    if interrupt is not None and interrupt.interrupted and str(result.status) == "cancelled":
        _err.print(interrupt.resume_hint(result.run_id), soft_wrap=True)
        code = EXIT_INTERRUPTED
    exit_now(code)  # abandoned sync steps delay the exit a bounded time
    raise typer.Exit(code)


def _token_printer(as_json: bool) -> Any:
    """Tokens go to stdout, or to stderr with --json (stdout is the JSON document)."""
    from legato.cli._stream import TokenPrinter

    out = sys.stderr if as_json else sys.stdout
    return TokenPrinter(out, terminal=out.isatty())


def _default_queue(config: Path | None, pipeline: str) -> str | None:
    from legato.config import LegatoConfig
    from legato.errors import ConfigError
    from legato.store import QueuesSection, default_queue

    try:
        queues = LegatoConfig.load(config).section("queues", QueuesSection)
    except ConfigError as exc:
        raise fail(str(exc), 2) from None
    return default_queue(queues, pipeline)


def _run_queued(
    pipeline: Pipeline,
    values: dict[str, Any],
    placement: tuple[str, int, tuple[str, ...]],
    source: str,
    interrupt: Any,
    database_url: str | None,
    idempotency_key: str | None,
    no_wait: bool,
    as_json: bool,
) -> None:
    """``legato run --queue``: enqueue (``placement``: queue, priority and tags), print the id,
    wait for the result unless ``no_wait``."""

    from legato.cli._queued import enqueue
    from legato.cli.runs import estimate_cost, open_store

    queue, priority, tags = placement
    if not queue.strip() or len(queue) > 255:
        raise fail(f"--queue: a queue name is 1 to 255 characters, got {queue!r}", 2)

    async def main() -> tuple[Any, RunResult | None]:
        async with open_store(database_url, create=True) as store:
            with interrupt.installed():
                interrupt.waiting(interrupt.run_id)
                return await enqueue(
                    store,
                    pipeline,
                    values,
                    queue=queue,
                    priority=priority,
                    tags=tags,
                    idempotency_key=idempotency_key,
                    source=source,
                    run_id=interrupt.run_id,
                    estimated_cost=estimate_cost(pipeline),
                    wait=not no_wait,
                    control=interrupt.control,
                )

    record, result = run_loop(main)
    if result is None:
        if as_json:
            sys.stdout.write(json.dumps({"run_id": record.id, "status": str(record.status), "queue": queue}) + "\n")
        else:
            typer.echo(record.id)
        raise typer.Exit(0)
    _finish(result, as_json, new_console())


def _report_elsewhere(result: RunResult, as_json: bool) -> None:
    if as_json:
        doc = {"run_id": result.run_id, "status": str(result.status), "outputs": None, "duration_s": 0.0}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        typer.echo(
            f"run {result.run_id} is {result.status} in another process; follow it with "
            f"`legato runs show {result.run_id}`"
        )


def _choose_executor(pipeline: Pipeline, name: str | None, pairs: list[str]) -> None:
    from legato.engine import executor_names

    if name is not None and name not in executor_names():
        raise fail(f"unknown executor {name!r}; known: {', '.join(executor_names())}", 2)
    options: dict[str, Any] = (
        {} if name is not None and name != pipeline.executor_name else dict(pipeline.executor_options)
    )
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise fail(f"--executor-option expects key=value, got {pair!r}", 2)
        try:
            options[key] = json.loads(raw)
        except json.JSONDecodeError:
            options[key] = raw
    pipeline.executor_name = name or pipeline.executor_name or "local"
    pipeline.executor_options = options
    pipeline.executor = None


def _json_default(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def _print_result(out: Console, result: RunResult) -> None:

    table = new_table(title=f"run {result.run_id} · {result.pipeline}", title_justify="left", show_edge=False)
    table.add_column("step")
    table.add_column("status")
    table.add_column("start ms", justify="right")
    table.add_column("duration ms", justify="right")
    table.add_column("attempts", justify="right")
    for name, t in result.timings.items():
        start = "" if t.started is None else f"{t.started * 1000:.1f}"
        dur = "" if t.duration is None else f"{t.duration * 1000:.1f}"
        table.add_row(name, styled(str(t.status)), start, dur, str(t.attempts or ""))
    out.print(table)
    for name, reason in result.skipped.items():
        out.print(f"[dim]skipped {name}: {reason}[/dim]")
    if result.ok:
        out.print_json(json.dumps(result.result, default=_json_default))
        out.print(f"[green]succeeded[/green] in {result.duration_s:.3f}s" + _cost(result))
    elif result.waiting:
        from legato.cli.runs import print_waiting

        print_waiting(out, result)
    else:
        out.print(f"[red]{result.status}[/red] after {result.duration_s:.3f}s: {escape(result.error or '')}")
        for name, message in result.failures.items():
            if name != result.failed_step or message.startswith("item "):
                out.print(f"[red]failed[/red] {escape(name)}: {escape(message)}", soft_wrap=True)
    out.print(wall_time_line(result), soft_wrap=True)


def wall_time_line(result: RunResult) -> str:
    """``wall 16.9 s · sequential 29.8 s (1.8x from parallelism) · cost $0.000000 (3 model calls)``.

    ``sequential`` is the sum of the step durations: what the run would have taken
    with one step at a time (steps resumed from a checkpoint count as they ran then).
    The speed-up is named only for a run long enough to measure (a wall time of at
    least :data:`MEASURABLE_S`) whose steps did overlap: on an instant run the ratio
    is the engine's own overhead, not parallelism. Times under 0.1 s are in ms.
    """
    sequential = sum(t.duration or 0.0 for t in result.timings.values())
    wall = result.duration_s
    overlapped = wall >= MEASURABLE_S and sequential >= wall
    speedup = f" ({sequential / wall:.1f}x from parallelism)" if overlapped else ""
    calls = int(result.usage.get("calls") or 0)
    return (
        f"wall {_duration(wall)} · sequential {_duration(sequential)}{speedup} · "
        f"cost ${result.cost:.6f} ({calls} model call{'' if calls == 1 else 's'})"
    )


MEASURABLE_S = 0.1
"""The shortest run whose parallel speed-up ``legato run`` reports."""


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds >= 0.1 else f"{seconds * 1000:.1f} ms"


def _cost(result: RunResult) -> str:
    return f" · ${result.cost:.6f}" if result.usage.get("calls") else ""


class _Progress:
    """Live table of step states, fed by run events (a quick sync subscriber)."""

    def __init__(self, pipeline: Pipeline, console: Console) -> None:
        from rich.live import Live

        self.order = list(pipeline.compile().order)
        self.state = dict.fromkeys(self.order, "pending")
        self.detail: dict[str, str] = {}
        self.live = Live(self.render(), console=console, refresh_per_second=12, transient=True)

    def __enter__(self) -> _Progress:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(None, None, None)

    def on_event(self, event: Event) -> None:
        from legato.engine import StepFailed, StepFinished, StepRetried, StepSkipped, StepStarted

        if isinstance(event, StepStarted):
            self.state[event.step] = "running"
        elif isinstance(event, StepFinished):
            self.state[event.step] = "succeeded"
            self.detail[event.step] = f"{event.duration_s * 1000:.0f} ms"
        elif isinstance(event, StepFailed):
            self.state[event.step] = "cancelled" if event.cancelled else "failed"
            self.detail[event.step] = f"{event.error_type}: {event.message}"
        elif isinstance(event, StepSkipped):
            self.state[event.step] = "skipped"
            self.detail[event.step] = event.reason
        elif isinstance(event, StepRetried):
            self.detail[event.step] = f"retry after attempt {event.attempt}: {event.error_type}"
        else:
            return
        self.live.update(self.render())

    def render(self) -> Any:
        from rich.table import Table

        table = Table(show_header=False, show_edge=False, box=None)
        for name in self.order:
            table.add_row(name, styled(self.state[name]), escape(self.detail.get(name, "")))
        return table


@app.command()
def validate(
    files: list[Path] = typer.Argument(..., help="Pipeline YAML file(s)."),
    config: Path | None = typer.Option(None, "--config", help=_CONFIG_HELP),
    strict: bool = typer.Option(
        False, "--strict", help="Also require the environment variables of the models' env: secrets."
    ),
) -> None:
    """Check pipeline files; list every error with file:line:column (exit 2 when any).

    Needs no secrets: a model's env: API key is checked only with --strict (and by run)."""
    failed = False
    for file in files:
        try:
            pipeline = load_pipeline_file(file, config, check_secrets=strict)
        except typer.Exit:
            failed = True
            continue
        n = len(pipeline.steps)
        typer.echo(f"{file}: ok (pipeline {pipeline.name!r}, {n} step{'s' if n != 1 else ''})")
    raise typer.Exit(2 if failed else 0)


class PlanFormat(StrEnum):
    """What ``legato plan --format`` prints."""

    TEXT = "text"
    MERMAID = "mermaid"
    DOT = "dot"
    JSON = "json"


@app.command()
def plan(
    file: Path = typer.Argument(..., help="Pipeline YAML file, or module:pipeline naming a Python Pipeline."),
    format: PlanFormat = typer.Option(
        PlanFormat.TEXT, "--format", "-f", parser=enum_parser(PlanFormat, "--format"), help="What to print."
    ),
    config: Path | None = typer.Option(None, "--config", help=_CONFIG_HELP),
    cost: bool = typer.Option(False, "--cost", help="Also estimate the cost per step and in total."),
    fan_out: int = typer.Option(10, "--fan-out", min=1, help="With --cost: items assumed for each map step."),
    ref_tokens: int = typer.Option(200, "--ref-tokens", min=0, help="With --cost: tokens per ${...} in a prompt."),
) -> None:
    """Show the execution plan: levels, critical path, parallelism and estimated wall time."""
    from legato.engine import summarize

    if cost and format not in (PlanFormat.TEXT, PlanFormat.JSON):
        raise fail("--cost works with --format text or json", 2)
    pipeline = load_pipeline_file(file, config)
    summary = summarize(pipeline.compile())
    estimate = _plan_cost(file, config, fan_out, ref_tokens) if cost else None
    if format is PlanFormat.JSON:
        data = summary.as_dict()
        if estimate is not None:
            data["cost"] = estimate.as_dict()
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    elif format is PlanFormat.MERMAID:
        sys.stdout.write(_mermaid(summary))
    elif format is PlanFormat.DOT:
        sys.stdout.write(_dot(pipeline.name, summary))
    else:
        _text(pipeline.name, summary)
        if estimate is not None:
            sys.stdout.write("\ncost estimate (one run):\n" + estimate.render())


def _plan_cost(file: Path, config: Path | None, fan_out: int, ref_tokens: int) -> Any:
    from legato.cli._cost import plan_cost
    from legato.errors import ConfigError

    try:
        return plan_cost(file, config, fan_out=fan_out, ref_tokens=ref_tokens)
    except ConfigError as exc:
        raise fail(str(exc), 2) from None


def _label(step: dict[str, Any]) -> str:
    parts = [step["name"]]
    if "map" in step:
        parts.append(f"map over {step['map']}")
    if "cycle" in step:
        cycle = step["cycle"]
        until = f" until {cycle['until']}" if cycle["until"] else ""
        parts.append(f"cycle ≤{cycle['max_iterations']}×{until}")
    if "switch" in step:
        parts.append(f"switch on {step['switch']['on']}")
    if "estimate_ms" in step:
        parts.append(f"{step['estimate_ms']:g} ms")
    return " · ".join(parts)


def _mermaid(summary: PlanSummary) -> str:
    lines = ["flowchart LR"]
    conditional = {s["name"] for s in summary.steps if "when" in s or "case_of" in s}
    cases = {s["name"]: s["case_of"] for s in summary.steps if "case_of" in s}
    for step in summary.steps:
        label = _label(step).replace('"', "'")
        if "cycle" in step:
            lines.extend(_mermaid_cycle(step, label))
            continue
        shape = f'{{"{label}"}}' if step["name"] in conditional or "switch" in step else f'["{label}"]'
        lines.append(f"  {step['name']}{shape}")
    for src, dst in summary.edges:
        if dst in cases and src == cases[dst]["switch"]:
            lines.append(f"  {src} -.->|{' / '.join(cases[dst]['cases'])}| {dst}")
            continue
        arrow = "-.->" if dst in conditional else "-->"
        lines.append(f"  {src} {arrow} {dst}")
    return "\n".join(lines) + "\n"


def _mermaid_cycle(step: dict[str, Any], label: str) -> list[str]:
    """A cycle as a subgraph of its steps, with the edge back to the first one."""
    name, cycle = step["name"], step["cycle"]
    inner = [s["name"] for s in cycle["steps"]]
    lines = [f'  subgraph {name}["{label}"]']
    lines.extend(f'    {name}__{s}["{s}"]' for s in inner)
    lines.extend(f"    {name}__{a} --> {name}__{b}" for a, b in cycle["edges"])
    if inner:
        lines.append(f"    {name}__{inner[-1]} -. next iteration .-> {name}__{inner[0]}")
    lines.append("  end")
    return lines


def _dot(name: str, summary: PlanSummary) -> str:
    lines = [f"digraph {json.dumps(name)} {{", "  rankdir=LR;", "  node [shape=box];"]
    critical = set(zip(summary.critical_path, summary.critical_path[1:], strict=False))
    cases = {s["name"]: s["case_of"] for s in summary.steps if "case_of" in s}
    for step in summary.steps:
        style = ", style=dashed" if "when" in step or "case_of" in step else ""
        style += ", shape=diamond" if "switch" in step else ""
        lines.append(f"  {json.dumps(step['name'])} [label={json.dumps(_label(step))}{style}];")
        if "cycle" in step:
            lines.extend(_dot_cycle(step))
    for src, dst in summary.edges:
        attrs = ["penwidth=2"] if (src, dst) in critical else []
        case_of = cases.get(dst)
        if case_of is not None and case_of["switch"] == src:
            attrs.append(f"label={json.dumps(' / '.join(case_of['cases']))}, style=dashed")
        suffix = f" [{', '.join(attrs)}]" if attrs else ""
        lines.append(f"  {json.dumps(src)} -> {json.dumps(dst)}{suffix};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _text_flow(step: dict[str, Any]) -> list[str]:
    """Lines for a cycle's body, a switch's cases and a case's step."""
    lines = []
    if "cycle" in step:
        cycle = step["cycle"]
        order = " -> ".join(s["name"] for s in cycle["steps"])
        until = f"until {cycle['until']}, " if cycle["until"] else ""
        lines.append(f"{step['name']} repeats {order} ({until}at most {cycle['max_iterations']} times)")
    if "switch" in step:
        cases = "; ".join(f"{case}: {', '.join(targets)}" for case, targets in step["switch"]["cases"].items())
        lines.append(f"{step['name']} runs exactly one case of {step['switch']['on']}: {cases}")
    if "case_of" in step:
        lines.append(
            f"{step['name']} runs when {step['case_of']['switch']} chooses {' or '.join(step['case_of']['cases'])}"
        )
    return lines


def _dot_cycle(step: dict[str, Any]) -> list[str]:
    """A cycle's steps in a cluster beside its node, with the edge back to the first one."""
    name, cycle = step["name"], step["cycle"]
    inner = [s["name"] for s in cycle["steps"]]

    def node(step_name: str) -> str:
        return json.dumps(f"{name}.{step_name}")

    lines = [f"  subgraph {json.dumps('cluster_' + name)} {{", f"    label={json.dumps(_label(step))};"]
    lines.extend(f"    {node(s)} [label={json.dumps(s)}];" for s in inner)
    lines.extend(f"    {node(a)} -> {node(b)};" for a, b in cycle["edges"])
    if inner:
        lines.append(f'    {node(inner[-1])} -> {node(inner[0])} [style=dashed, label="next iteration"];')
    lines.append("  }")
    if inner:
        lines.append(f"  {json.dumps(name)} -> {node(inner[0])} [style=dotted, arrowhead=none];")
    return lines


def _text(name: str, summary: PlanSummary) -> None:
    out = new_console()
    out.print(f"pipeline [bold]{name}[/bold]: {len(summary.steps)} steps")
    by_name = {s["name"]: s for s in summary.steps}
    for i, level in enumerate(summary.levels):
        out.print(f"  level {i}: " + ", ".join(_label(by_name[n]) for n in level))
    for step in summary.steps:
        if "when" in step:
            out.print(f"  [dim]{step['name']} runs when: {step['when']}[/dim]")
        for line in _text_flow(step):
            out.print(f"  [dim]{escape(line)}[/dim]")
    out.print(f"critical path: {' -> '.join(summary.critical_path)}")
    out.print(f"max parallelism: {summary.max_parallelism}")
    if summary.estimated_parallel_ms is not None and summary.estimated_sequential_ms is not None:
        seq, par = summary.estimated_sequential_ms, summary.estimated_parallel_ms
        speedup = f" ({seq / par:.1f}x faster)" if par > 0 else ""
        out.print(f"estimated wall time: {par:g} ms parallel vs {seq:g} ms sequential{speedup}")
        if summary.unestimated:
            out.print(f"[dim]no estimate_ms (counted as 0): {', '.join(summary.unestimated)}[/dim]")
    else:
        out.print("[dim]estimated wall time: add estimate_ms to steps to see it[/dim]")
