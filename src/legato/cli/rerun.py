"""``legato runs rerun RUN --from STEP``: a new run that re-runs a stored run from a step.

The steps the chosen one does not affect keep the original's stored outputs; it and
everything downstream run again, with ``--input`` overriding the original's inputs
and ``--set step.field=value`` changing a field of a step's YAML (a prompt, a
model, an argument under ``with``) for this run only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from legato.cli._loop import run_loop
from legato.cli.runs import DATABASE_URL_HELP, fail, load_pipeline_file, not_found, open_store, report_result, runs_app

if TYPE_CHECKING:
    from legato.engine import Pipeline, RunResult

__all__ = ["apply_sets"]


def apply_sets(text: str, sets: list[str]) -> tuple[str, set[str]]:
    """The pipeline YAML ``text`` with each ``step.field[.sub...]=value`` applied
    (``value`` is JSON, or text when it is not), and the steps changed. Raises
    ``ValueError`` naming a malformed assignment or an unknown step."""
    import yaml

    data = yaml.safe_load(text)
    steps = data.get("steps") if isinstance(data, dict) else None
    if not isinstance(steps, dict):
        raise ValueError("the pipeline file has no 'steps' mapping")
    changed: set[str] = set()
    for item in sets:
        target, sep, raw = item.partition("=")
        parts = target.split(".")
        if not sep or len(parts) < 2 or not all(parts):
            raise ValueError(f"--set expects step.field=value, got {item!r}")
        step, *path = parts
        node = steps.get(step)
        if not isinstance(node, dict):
            raise ValueError(f"--set {item!r}: the pipeline has no step {step!r} (its steps: {', '.join(steps)})")
        for key in path[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ValueError(f"--set {item!r}: {key!r} of step {step!r} is not a mapping")
            node = child
        try:
            node[path[-1]] = json.loads(raw)
        except ValueError:
            node[path[-1]] = raw
        changed.add(step)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True), changed


@runs_app.command("rerun")
def rerun(
    run_id: str = typer.Argument(..., help="Run id, or a unique prefix of it (as `runs list` shows)."),
    from_step: str = typer.Option(..., "--from", help="The step to run again (with everything downstream of it)."),
    input: list[str] = typer.Option([], "--input", "-i", help="Override an input: key=value (repeatable; JSON)."),
    set_: list[str] = typer.Option(
        [], "--set", help="Change a step's field for this run: step.field=value (repeatable; JSON values)."
    ),
    file: Path | None = typer.Option(None, "--file", "-f", help="Pipeline YAML (default: the file the run came from)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    database_url: str | None = typer.Option(None, "--database-url", help=DATABASE_URL_HELP),
    config: Path | None = typer.Option(None, "--config", help="legato.yaml (default: $LEGATO_CONFIG, ./legato.yaml)."),
) -> None:
    """Run a stored run again from a step, as a new run linked to it: the steps that
    step does not affect keep their stored outputs; it and its downstream run again.

    Exit codes: 0 the new run succeeded (or waits for an answer); 1 it failed, or a
    store failure; 2 an unknown run or step, a bad --input or --set, or a --set on a
    step whose stored output is reused."""

    from legato.cli._interrupt import Interrupt
    from legato.cli.run import _parse_inputs
    from legato.engine import RunControl
    from legato.errors import InputError, RunNotFound, SpecError, StoreError
    from legato.store import DurableRunner, downstream_of

    interrupt = Interrupt(RunControl(), run_id)

    async def main() -> RunResult:
        async with open_store(database_url) as store:
            try:
                record = await store.get_run(await store.resolve_run_id(run_id))
            except RunNotFound as exc:
                raise not_found(exc) from None
            path = file or (Path(record.source) if record.source else None)
            if path is None:
                raise fail(f"run {record.id} was not started from a YAML file: pass --file PIPELINE.yaml", 2)
            pipeline = _with_sets(path, set_, config) if set_ else load_pipeline_file(path, config)
            try:
                again = downstream_of(pipeline, from_step)
            except InputError as exc:
                raise fail(str(exc), 2) from None
            if set_:
                _check_sets(pipeline, set_, again, from_step)
            inputs = _parse_inputs(pipeline, input, None)
            try:
                with interrupt.installed():
                    return await DurableRunner(store).rerun(
                        pipeline,
                        record.id,
                        from_step,
                        inputs=inputs,
                        source=str(path),
                        control=interrupt.control,
                    )
            except (InputError, SpecError) as exc:
                raise fail(str(exc), 2) from None
            except StoreError as exc:
                raise fail(str(exc), 1) from None

    result = run_loop(main)
    report_result(result, as_json, interrupt)


def _with_sets(path: Path, sets: list[str], config: Path | None) -> Pipeline:
    from legato.config import LegatoConfig
    from legato.errors import ConfigError, SpecError
    from legato.spec import loads_pipeline

    try:
        text, _ = apply_sets(path.read_text(encoding="utf-8"), sets)
    except OSError as exc:
        raise fail(f"cannot read {path}: {exc}", 2) from None
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    try:
        pipeline = loads_pipeline(text, config=LegatoConfig.load(config), base_dir=path.parent)
    except (ConfigError, SpecError) as exc:
        raise fail(f"with --set: {exc}", 2) from None
    return pipeline


def _check_sets(pipeline: Any, sets: list[str], again: set[str], from_step: str) -> None:
    for item in sets:
        step = item.partition(".")[0]
        if step not in again:
            raise fail(
                f"--set {item!r}: step {step!r} is not {from_step!r} or downstream of it, so its stored output "
                f"is reused and the change would do nothing; rerun --from {step} instead",
                2,
            )
