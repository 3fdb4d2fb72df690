"""The ``legato bench`` plot as SVG: latency percentiles over the test, and the
latency-cost frontier of the pipeline's options.

Hand-written (a few dozen SVG elements) because no plotting library is among
legato's dependencies and a load test should not pull one in; the output is a
plain, self-contained SVG file any browser or Markdown renderer shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from legato.observe._load import LoadReport

__all__ = ["render_svg", "write_svg"]

_W, _H = 1000, 450
_PANEL = (70, 70, 400, 300)  # left, top, width, height of the first panel; the second sits at +470
_COLOURS = {"p50_s": "#2b6cb0", "p95_s": "#dd6b20", "p99_s": "#c53030"}
_DASHES = {"p50_s": "", "p95_s": "", "p99_s": ' stroke-dasharray="6 4"'}


def write_svg(report: LoadReport, path: Path) -> Path:
    """Write :func:`render_svg` of ``report`` to ``path`` (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_svg(report), encoding="utf-8")
    return path


def render_svg(report: LoadReport) -> str:
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H + 20 * len(report.options[:8])}" '
        f'font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        _text(
            _W / 2,
            24,
            f"{report.pipeline}: {report.rate:g} runs/s for {report.duration:g} s ({report.target})",
            size=14,
            anchor="middle",
            bold=True,
        ),
    ]
    parts += _timeline_panel(report, 0)
    parts += _frontier_panel(report, 470)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _timeline_panel(report: LoadReport, dx: float) -> list[str]:
    points = report.timeline
    x_max = max([report.duration, *(p["t"] for p in points)])
    y_max = max([0.001, *(p["p99_s"] for p in points)]) * 1.1
    out = _axes(dx, "latency from intended start over the test", "time into the test (s)", "latency (ms)", x_max, y_max)
    for i, (key, colour) in enumerate(_COLOURS.items()):
        xy = [_point(dx, p["t"], p[key], x_max, y_max) for p in points]
        if xy:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{_DASHES[key]}/>')
        lx = _PANEL[0] + dx + 10 + 70 * i
        out.append(f'<line x1="{lx}" y1="{_PANEL[1] + 10}" x2="{lx + 18}" y2="{_PANEL[1] + 10}" '
                   f'stroke="{colour}" stroke-width="2"/>')  # fmt: skip
        out.append(_text(lx + 22, _PANEL[1] + 14, key.removesuffix("_s")))
    return out


def _frontier_panel(report: LoadReport, dx: float) -> list[str]:
    today = {"title": "this test (measured)", "p95_s": report.p95_s, "cost_per_run": report.cost_per_run}
    options: Sequence[dict[str, Any]] = report.options[:8]
    everything = [today, *options]
    x_max = max([1e-9, *(o["cost_per_run"] for o in everything)]) * 1.15
    y_max = max([0.001, *(o["p95_s"] for o in everything)]) * 1.15
    out = _axes(dx, "options: p95 latency against cost per run", "cost per run (USD)", "p95 (ms)", x_max, y_max)
    frontier = _pareto(everything)
    if len(frontier) > 1:
        xy = " ".join(
            "{:.1f},{:.1f}".format(*_point(dx, o["cost_per_run"], o["p95_s"], x_max, y_max)) for o in frontier
        )
        out.append(f'<polyline points="{xy}" fill="none" stroke="#68d391" stroke-width="1.5" stroke-dasharray="4 3"/>')
    for i, o in enumerate(everything):
        x, y = _point(dx, o["cost_per_run"], o["p95_s"], x_max, y_max)
        colour = "#2d3748" if i == 0 else "#2f855a"
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{colour}"/>')
        out.append(_text(x + 7, y - 6, "now" if i == 0 else str(i), bold=True))
    note = "" if options else "no options (too few runs, or none applies)"
    if all(o["cost_per_run"] == 0 for o in everything):
        note = "every run costs $0 (no priced model calls): the options differ in latency only"
    if note:
        out.append(_text(_PANEL[0] + dx + 10, _PANEL[1] + _PANEL[3] - 10, note, size=11))
    legend_y = _PANEL[1] + _PANEL[3] + 64
    for i, o in enumerate(options, 1):
        label = f"{i}. {o['title']}: p95 {o['p95_s'] * 1000:.0f} ms, ${o['cost_per_run']:.6f}/run"
        out.append(_text(20, legend_y + 20 * (i - 1), label if len(label) < 150 else label[:147] + "..."))
    return out


def _pareto(points: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The points no other point beats on both p95 and cost, cheapest first."""
    out: list[dict[str, Any]] = []
    for o in sorted(points, key=lambda o: (o["cost_per_run"], o["p95_s"])):
        if not out or o["p95_s"] < out[-1]["p95_s"]:
            out.append(o)
    return out


def _axes(dx: float, title: str, x_label: str, y_label: str, x_max: float, y_max: float) -> list[str]:
    x0, top, width, height = _PANEL
    left = x0 + dx
    out = [
        _text(left + width / 2, top - 8, title, anchor="middle", bold=True),
        f'<rect x="{left}" y="{top}" width="{width}" height="{height}" fill="none" stroke="#a0aec0"/>',
        _text(left + width / 2, top + height + 34, x_label, anchor="middle"),
        f'<text x="{left - 52}" y="{top + height / 2}" transform="rotate(-90 {left - 52} {top + height / 2})" '
        f'text-anchor="middle">{escape(y_label)}</text>',
    ]
    for k in range(5):
        fx, fy = k / 4, k / 4
        x, y = left + fx * width, top + height - fy * height
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + width}" y2="{y:.1f}" stroke="#edf2f7"/>')
        is_ms = "ms" in y_label
        out.append(_text(left - 6, y + 4, f"{fy * y_max * (1000 if is_ms else 1):.0f}", anchor="end"))
        out.append(_text(x, top + height + 16, _tick(fx * x_max), anchor="middle"))
    return out


def _tick(value: float) -> str:
    if value == 0:
        return "0"
    return f"{value:.3g}" if value >= 0.01 else f"{value:.1e}"


def _point(dx: float, x: float, y: float, x_max: float, y_max: float) -> tuple[float, float]:
    left, top, width, height = _PANEL
    return left + dx + x / x_max * width, top + height - y / y_max * height


def _text(x: float, y: float, text: str, *, size: int = 12, anchor: str = "start", bold: bool = False) -> str:
    weight = ' font-weight="bold"' if bold else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}"{weight}>{escape(text)}</text>'
