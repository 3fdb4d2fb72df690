"""Jinja2 rendering for the dashboard: the environment, filters and page contexts.

Autoescaping is on for every template; values shown from runs (inputs, outputs,
errors, journal text) also pass through the redactor, so a secret that reached a
step output is not displayed.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

from legato.observe import default_redactor
from legato.server.ui._view import NODE_H, NODE_W, GanttBar, RunView, StepView, layout_graph

__all__ = ["Renderer"]

_TEMPLATES = Path(__file__).parent / "templates"
MAX_VALUE_CHARS = 6000


def _ts(epoch: float | None) -> str:
    if not epoch:
        return UNKNOWN
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


UNKNOWN = "—"  # the one notation for a value that is not known (no cost, no duration...)


def _usd(value: float | None) -> str:
    """Dollars with the digits that matter: $0.000011, $0.0042, $0.37, $1,204.50."""
    if value is None:
        return UNKNOWN
    if value == 0:
        return "$0"
    if abs(value) >= 1:
        return f"${value:,.2f}"
    decimals = max(2, 1 - math.floor(math.log10(abs(value))))  # two significant digits
    return f"${value:.{decimals}f}".rstrip("0").rstrip(".") if decimals > 2 else f"${value:.2f}"


# Drawn before a step's name in the graph: its status is never shown by colour alone.
GLYPHS = {"pending": "○", "running": "▶", "succeeded": "✓", "failed": "✗", "skipped": "↷", "cancelled": "■",
          "not_run": "–", "waiting": "⏸"}  # fmt: skip


def _label(status: str) -> str:
    return status.replace("_", " ")


def _secs(value: float | None) -> str:
    if value is None:
        return UNKNOWN
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.2f} s"
    return f"{value / 60:.1f} min"


def _clip(value: Any, n: int = 80) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= n else text[: n - 1] + "…"


def _pretty(value: Any) -> str:
    try:
        text = json.dumps(value, indent=2, ensure_ascii=False, default=repr, sort_keys=False)
    except (TypeError, ValueError):
        text = repr(value)
    text = default_redactor().text(text)
    if len(text) > MAX_VALUE_CHARS:
        text = text[:MAX_VALUE_CHARS] + f"\n… ({len(text) - MAX_VALUE_CHARS} more characters)"
    return text


def _redact(value: Any) -> str:
    return default_redactor().text("" if value is None else str(value))


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3g}"
    return _clip(_redact(value), 120)


def _run_duration(run: Any, now: float) -> str:
    start = run.started_at or run.created_at
    if not start:
        return "—"
    end = run.finished_at or (now if run.status in ("running", "pending") else None)
    return _secs(end - start) if end else "—"


def _ticks(span: float) -> list[dict[str, Any]]:
    if span <= 0:
        return []
    raw = span / 6
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    out, t = [], 0.0
    while t <= span + 1e-9:
        out.append({"x": t / span, "label": _secs(t) if t else "0"})
        t += step
    return out


class Renderer:
    def __init__(self, base: str) -> None:
        self.base = base
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(_TEMPLATES)),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters.update(
            ts=_ts, usd=_usd, secs=_secs, clip=_clip, pretty=_pretty, redact=_redact, cell=_cell,
            run_duration=_run_duration, label=_label,
        )  # fmt: skip
        env.globals.update(base=base, node_w=NODE_W, node_h=NODE_H, nav="", logged_in=False, glyphs=GLYPHS,
                           calls_by_step={})  # fmt: skip
        self.env = env

    def page(self, template: str, **ctx: Any) -> str:
        return self.env.get_template(template).render(**ctx)

    def fragment(self, template: str, **ctx: Any) -> str:
        return self.env.get_template(template).render(**ctx)

    def run_context(self, view: RunView, now: float, bars: list[GanttBar], span: float) -> dict[str, Any]:
        graph = layout_graph(view)
        order = {n.name: i for i, n in enumerate(sorted(graph.nodes, key=lambda n: (n.x, n.y)))}
        steps = sorted(view.steps.values(), key=lambda s: order.get(s.name, 0))
        rows: dict[int, str] = {}
        for b in bars:
            rows.setdefault(b.row, f"{b.step} · items" if b.item is not None else b.step)
        counts: dict[str, int] = {}
        for s in view.steps.values():
            counts[s.status] = counts.get(s.status, 0) + 1

        def step_inputs(step: StepView) -> dict[str, Any]:
            given: dict[str, Any] = {}
            for dep in step.deps:
                d = view.steps.get(dep)
                given[f"steps.{dep}"] = d.output if d is not None and d.has_output else None
            if not step.deps:
                given.update({f"inputs.{k}": v for k, v in view.inputs.items()})
            return given

        return {
            "run": view,
            "now": now,
            "graph": graph,
            "bars": bars,
            "span": span,
            "ticks": _ticks(span),
            "row_names": [rows[i] for i in sorted(rows)],
            "steps": steps,
            "counts": [f"{n} {_label(s)}" for s, n in sorted(counts.items())],
            "step_inputs": step_inputs,
        }
