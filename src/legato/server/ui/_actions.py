"""Dashboard actions that change state: starting a run of a configured pipeline,
answering a step that waits for a person, cancelling, resuming a run whose worker
stopped, retrying and re-running. Every action on a run goes through ``run_action``
(signed-in viewer, same-site request, the ownership rule of every read, the
action available here, the ``runs:write`` scope) and asks for a ticked
confirmation; what it did is written to the audit log.

The Start form is generated from the pipeline's declared inputs (text, number,
true/false, or JSON for lists, objects and untyped inputs). Submitting it needs the
``runs:write`` scope, a same-site request and a ticked confirmation; the run is
started through the runs API's own ``start`` (the same input checks, owned by the
signed-in key) and the start is written to the audit log. An answer goes through
the runs API's own ``respond`` (checked against the step's schema; the run resumes)
after the same ownership rule as every read, under the same conditions.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from legato.errors import RunNotFound, StoreError
from legato.server._audit import AuditAction
from legato.server._body import InvalidBody, parse_form, parse_json
from legato.server._errors import GatewayError
from legato.server.ui._access import Viewer, client_address, same_origin
from legato.server.ui._dashboard import Dashboard, dashboard
from legato.store import RunRecord, visible_run

__all__ = ["FormField", "form_fields", "parse_inputs", "router"]

router = APIRouter()

Form = dict[str, list[str]]  # a submitted form: each field's values

_KINDS = {"string": "text", "str": "text", "integer": "number", "int": "number", "number": "number",
          "float": "number", "boolean": "checkbox", "bool": "checkbox"}  # fmt: skip


class FormField:
    def __init__(self, name: str, kind: str, required: bool, default: Any, description: str, type_name: str) -> None:
        self.name, self.kind, self.required, self.description, self.type_name = (
            name, kind, required, description, type_name,
        )  # fmt: skip
        if default is None:
            self.value = ""
        elif kind == "json":
            self.value = json.dumps(default, ensure_ascii=False)
        else:
            self.value = str(default)
        self.checked = kind == "checkbox" and default is True


def form_fields(inputs: Mapping[str, Any]) -> list[FormField]:
    """One form field per declared input (``InputDecl``)."""
    out = []
    for name, decl in inputs.items():
        type_name = str(getattr(decl, "type_name", "any") or "any")
        declared = getattr(decl, "type", None)
        if type_name == "any" and isinstance(declared, type):  # a Python type given without a name
            type_name = declared.__name__
        kind = _KINDS.get(type_name.lower(), "json")
        out.append(FormField(name, kind, bool(getattr(decl, "required", True)), getattr(decl, "default", None),
                             str(getattr(decl, "description", "") or ""), type_name))  # fmt: skip
    return out


class FormError(ValueError):
    """A field that cannot be read as its input's type (names the field)."""


def parse_inputs(fields: list[FormField], form: Mapping[str, list[str]]) -> dict[str, Any]:
    """The run's inputs from the submitted form; an empty optional field is left out
    (the pipeline's default applies)."""
    inputs: dict[str, Any] = {}
    for f in fields:
        raw = (form.get(f"input.{f.name}") or [""])[0]
        if f.kind == "checkbox":
            inputs[f.name] = raw == "on"
            continue
        if raw.strip() == "" and not (f.kind == "text" and f.required):
            continue
        if f.kind == "number":
            try:
                inputs[f.name] = int(raw) if f.type_name.lower() in ("integer", "int") else float(raw)
            except ValueError:
                raise FormError(f"{f.name}: {raw!r} is not a {f.type_name}") from None
        elif f.kind == "json":
            inputs[f.name] = _json_field(raw, f.name)
        else:
            inputs[f.name] = raw
    return inputs


def _fields_of(d: Dashboard, name: str) -> list[FormField] | None:
    inputs = d.sources.inputs(name) if d.sources.inputs is not None else None
    return None if inputs is None or d.sources.start is None else form_fields(inputs)


def _refused(request: Request, status: int, title: str, message: str) -> Response:
    return dashboard(request).page("error.html", request, status=status, title=title, message=message)


@router.get("/pipelines/{name}/start")
async def start_form(request: Request, name: str) -> Response:
    d = dashboard(request)
    if not isinstance(viewer := await d.gate(request), Viewer):
        return viewer
    fields = _fields_of(d, name)
    if fields is None:
        return _refused(request, 404, "Pipeline not found", f"No pipeline {name!r} is served here.")
    return d.page("start.html", request, nav="runs", pipeline=name, fields=fields, error=None,
                  can_start=_can_write(viewer))  # fmt: skip


@router.post("/pipelines/{name}/start")
async def start(request: Request, name: str) -> Response:
    d = dashboard(request)
    if not isinstance(viewer := await d.gate(request), Viewer):
        return viewer
    if not same_origin(request):
        return _refused(request, 403, "Forbidden", "Cross-site request refused.")
    fields = _fields_of(d, name)
    if fields is None:
        return _refused(request, 404, "Pipeline not found", f"No pipeline {name!r} is served here.")
    if not _can_write(viewer):
        return _refused(request, 403, "Forbidden", "Starting a run needs a key with the runs:write scope.")
    form = parse_form(await request.body())
    for f in fields:  # what was typed is shown again if the start is refused
        typed = form.get(f"input.{f.name}")
        if typed:
            f.value, f.checked = typed[0], typed[0] == "on"
        elif f.kind == "checkbox":
            f.checked = False
    try:
        _confirmed(form, "start the run")
        inputs = parse_inputs(fields, form)
        assert d.sources.start is not None
        record = await d.sources.start(name, inputs, viewer.key.id if viewer.key else "")
    except (FormError, GatewayError) as exc:
        status, message = _failure(exc)
        return d.page("start.html", request, status=status, nav="runs", pipeline=name, fields=fields,
                      error=message, can_start=True)  # fmt: skip
    await d.audit(AuditAction.RUN_STARTED, request, viewer, target=record.id, pipeline=name)
    return RedirectResponse(f"{d.base}/runs/{record.id}", status_code=303)


async def _run_action(
    request: Request, run_id: str, available: bool, unavailable: str, needs: str
) -> tuple[Viewer, RunRecord, Form] | Response:
    """The signed-in viewer, the run (by the rule every read uses) and the submitted
    form of an action on a run, or the page that refuses it."""
    d = dashboard(request)
    if not isinstance(viewer := await d.gate(request), Viewer):
        return viewer
    if not same_origin(request):
        return _refused(request, 403, "Forbidden", "Cross-site request refused.")
    try:
        record = await visible_run(d.store(), viewer.principal, run_id)
    except RunNotFound:
        return _refused(request, 404, "Run not found", f"No run {run_id!r}.")
    if not available:
        return _refused(request, 404, "Not available", unavailable)
    if not _can_write(viewer):
        return _refused(request, 403, "Forbidden", f"{needs} needs a key with the runs:write scope.")
    form = parse_form(await request.body())
    return viewer, record, form


@router.post("/runs/{run_id}/steps/{step}/respond")
async def respond(request: Request, run_id: str, step: str) -> Response:
    d = dashboard(request)

    async def answer(viewer: Viewer, record: RunRecord, form: Form) -> _Done:
        assert d.sources.respond is not None
        by = f"the dashboard ({viewer.label}, {client_address(request)})"
        await d.sources.respond(record, step, _answer(form), by=by)
        return _Done(AuditAction.STEP_ANSWERED, record.id, f"/runs/{record.id}#step-{step}", {"step": step})

    return await _act_on_run(
        request, run_id, d.sources.respond is not None, "Answers are not taken here.", "Answering a step",
        "send the answer", "Answer not taken", answer,
    )  # fmt: skip


@router.post("/runs/{run_id}/cancel")
async def cancel(request: Request, run_id: str) -> Response:
    d = dashboard(request)

    async def cancel_run(viewer: Viewer, record: RunRecord, form: Form) -> _Done:
        try:
            await d.cancel(record.id, f"the dashboard ({viewer.label}, {client_address(request)})")
        except StoreError as exc:  # it finished meanwhile
            raise GatewayError(409, "conflict", str(exc)) from exc
        return _Done(AuditAction.RUN_CANCELLED, record.id, f"/runs/{record.id}", {})

    return await _act_on_run(
        request, run_id, True, "", "Cancelling a run", "cancel the run", "Not cancelled", cancel_run
    )


@router.post("/runs/{run_id}/resume")
async def resume(request: Request, run_id: str) -> Response:
    d = dashboard(request)

    async def resume_run(viewer: Viewer, record: RunRecord, form: Form) -> _Done:
        assert d.sources.resume is not None
        await d.sources.resume(record)
        return _Done(AuditAction.RUN_RESUMED, record.id, f"/runs/{record.id}", {})

    return await _act_on_run(
        request, run_id, d.sources.resume is not None, "Runs are not resumed here.", "Resuming a run",
        "resume the run", "Not resumed", resume_run,
    )  # fmt: skip


@router.post("/runs/{run_id}/rerun")
async def rerun(request: Request, run_id: str) -> Response:
    d = dashboard(request)

    async def rerun_run(viewer: Viewer, record: RunRecord, form: Form) -> _Done:
        assert d.sources.rerun is not None
        from_step = (form.get("from_step") or [""])[0]
        new = await d.sources.rerun(record, from_step, {}, tenant=viewer.key.id if viewer.key else "")
        return _Done(AuditAction.RUN_RERUN, new.id, f"/runs/{new.id}", {"of": record.id, "from_step": from_step})

    return await _act_on_run(
        request, run_id, d.sources.rerun is not None, "Runs are not re-run here.", "Re-running a run",
        "start the new run", "Not re-run", rerun_run,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Done:
    """What an action on a run did: its audit entry and the page to go to next."""

    action: AuditAction
    target: str
    page: str
    details: dict[str, str]


async def _act_on_run(
    request: Request,
    run_id: str,
    available: bool,
    unavailable: str,
    needs: str,
    confirm: str,
    refused: str,
    act: Callable[[Viewer, RunRecord, Form], Awaitable[_Done]],
) -> Response:
    """An action on a run the dashboard's sources carry out: checked by :func:`_run_action`,
    confirmed (``confirm`` names what the box agrees to), done, audited, then the next
    page; a refusal (the form's or the gateway's) is shown under the title ``refused``."""
    d = dashboard(request)
    checked = await _run_action(request, run_id, available, unavailable, needs)
    if isinstance(checked, Response):
        return checked
    viewer, record, form = checked
    try:
        _confirmed(form, confirm)
        done = await act(viewer, record, form)
    except (FormError, GatewayError) as exc:
        status, message = _failure(exc)
        return _refused(request, status, refused, message)
    await d.audit(done.action, request, viewer, target=done.target, **done.details)
    return RedirectResponse(f"{d.base}{done.page}", status_code=303)


def _confirmed(form: Mapping[str, list[str]], what: str) -> None:
    """Every action asks for a ticked confirmation (a FormError naming what it does)."""
    if (form.get("confirm") or [""])[0] != "yes":
        raise FormError(f"tick the confirmation to {what}")


def _failure(exc: FormError | GatewayError) -> tuple[int, str]:
    """The status and message a refused form shows: the gateway's own for its errors, 400 for the form's."""
    return (exc.status, exc.message) if isinstance(exc, GatewayError) else (400, str(exc))


def _answer(form: Mapping[str, list[str]]) -> Any:
    """``approved=true|false`` (an approval) or ``value`` as JSON (an answer)."""
    approved = (form.get("approved") or [""])[0]
    if approved in ("true", "false"):
        return approved == "true"
    return _json_field((form.get("value") or [""])[0], "the answer")


def _json_field(raw: str, what: str) -> Any:
    """A form field holding JSON, read as strictly as the API's bodies (no lone surrogates, NaN...)."""
    try:
        return parse_json(raw.encode("utf-8"), "the value")
    except InvalidBody as exc:
        raise FormError(f"{what}: {exc.detail}") from None


def _can_write(viewer: Viewer) -> bool:
    return viewer.key is None or viewer.key.has_scope("runs:write")
