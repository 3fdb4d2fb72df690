"""``legato runs respond RUN STEP``: answer a waiting run's wait step and resume it here.

The answer is checked against the step's schema before anything is written; the
run then resumes in this process (from the file it came from, or ``--file``). A
run started from Python code, or with ``--no-resume``, is left ``pending``: the
next ``legato runs recover`` (or a ``legato serve`` serving its pipeline) resumes it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from legato.cli._console import new_console
from legato.cli._loop import run_loop
from legato.cli.runs import DATABASE_URL_HELP, fail, load_pipeline_file, not_found, open_store, report_result, runs_app

if TYPE_CHECKING:
    from legato.engine import RunResult

__all__ = ["answer_from_options"]


def answer_from_options(approve: bool, reject: bool, value: str | None) -> Any:
    """The answer given by exactly one of ``--approve``, ``--reject``, ``--value JSON``."""
    given = [approve, reject, value is not None]
    if sum(given) != 1:
        raise fail("give exactly one of --approve, --reject or --value JSON", 2)
    if value is None:
        return approve
    try:
        return json.loads(value)
    except ValueError as exc:
        raise fail(f"--value is not valid JSON: {exc}", 2) from None


@runs_app.command("respond")
def respond(
    run_id: str = typer.Argument(..., help="Run id, or a unique prefix of it (as `runs list` shows)."),
    step: str = typer.Argument(..., help="The wait step to answer."),
    approve: bool = typer.Option(False, "--approve", help="Approve (an approval step's answer: true)."),
    reject: bool = typer.Option(False, "--reject", help="Reject (an approval step's answer: false)."),
    value: str | None = typer.Option(None, "--value", help="The answer as JSON, checked against the step's schema."),
    by: str = typer.Option("", "--by", help="Who answers (stored with the answer; default: the local user)."),
    no_resume: bool = typer.Option(False, "--no-resume", help="Only record the answer; leave the run to a worker."),
    file: Path | None = typer.Option(None, "--file", "-f", help="Pipeline YAML (default: the file the run came from)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    database_url: str | None = typer.Option(None, "--database-url", help=DATABASE_URL_HELP),
    config: Path | None = typer.Option(None, "--config", help="legato.yaml (default: $LEGATO_CONFIG, ./legato.yaml)."),
) -> None:
    """Answer a waiting run's wait step; the run resumes in this process.

    Exit codes: 0 answered (and, when resumed, the run succeeded or waits again);
    1 the resumed run failed, or a store failure; 2 a bad answer (not JSON, or not
    valid against the step's schema: the message names the problem), an unknown
    run, or a step that is not waiting for an answer."""
    import getpass

    from legato.cli._interrupt import Interrupt
    from legato.engine import RunControl
    from legato.errors import InvalidAnswer, LeaseLost, RunNotFound, StepNotWaiting, StoreError
    from legato.store import DurableRunner
    from legato.store import respond as record_answer

    answer = answer_from_options(approve, reject, value)
    interrupt = Interrupt(RunControl(), run_id)
    who = by or _local_user(getpass.getuser)

    async def main() -> RunResult | None:
        async with open_store(database_url) as store:
            try:
                record = await store.get_run(await store.resolve_run_id(run_id))
            except RunNotFound as exc:
                raise not_found(exc) from None
            path = file or (Path(record.source) if record.source else None)
            pipeline = load_pipeline_file(path, config) if path is not None and not no_resume else None
            try:
                record = await record_answer(store, record.id, step, answer, by=who)
            except InvalidAnswer as exc:
                raise fail(str(exc), 2) from None
            except StepNotWaiting as exc:
                raise fail(str(exc), 2) from None
            if pipeline is None:
                new_console().print(
                    f"answered step {step!r} of run {record.id}; the run is pending: "
                    "`legato runs recover` or a server serving its pipeline resumes it"
                )
                return None
            interrupt.run_id = record.id
            try:
                with interrupt.installed():
                    return await DurableRunner(store).resume(pipeline, record.id, control=interrupt.control)
            except LeaseLost as exc:
                raise fail(f"answered; {exc}: that process resumes it", 1) from None
            except StoreError as exc:
                raise fail(f"answered; resuming failed: {exc}", 1) from None

    result = run_loop(main)
    if result is not None:
        report_result(result, as_json, interrupt)


def _local_user(getuser: Any) -> str:
    try:
        return f"local user {getuser()}"
    except (KeyError, OSError):  # no passwd entry (a container)
        return "local user"
