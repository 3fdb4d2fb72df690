"""Charts as data for server-rendered SVG: no script, no chart library.

Each chart is a title, a description (the SVG's ``<title>``/``<desc>``, read by
screen readers) and rows whose geometry is worked out here; the templates only
place them. Every value is also written out as text beside its bar (and in a table
for the spend chart), so nothing is shown by length or colour alone. Series colours
are CSS classes (``c1``…``c6`` for the six costliest series, ``c0`` for the rest added
up as "all others", which keeps a chart of many keys small) whose light and dark values
keep at least 3:1 against the card (WCAG 1.4.11 for graphics).

Widths are fractions of the drawing width (0..1) and the templates use percentages,
so a chart fills its card at any screen width without a horizontal scroll; labels and
values of bar rows are HTML text above each bar, so they wrap instead of being cut.
A p95 is drawn as an outlined bar with its p50 filled inside it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from legato.store import DurationStats, ModelStats, SpendPoint

__all__ = ["Chart", "Column", "Row", "Segment", "budget_chart", "duration_chart", "latency_chart", "spend_chart"]

SERIES = 6  # series drawn apart, each in its own colour; the others are added up as OTHER
OTHER = "all others"
LIMIT_AT = 0.8  # where a budget's limit is drawn, leaving room to show an overspend up to 125%


@dataclass(frozen=True, slots=True)
class Segment:
    css: str  # colour class
    start: float  # 0..1 of the drawing width
    width: float
    tip: str  # the <title> of the shape: the value in words


@dataclass(frozen=True, slots=True)
class Row:
    label: str
    segments: tuple[Segment, ...]
    text: str  # the values, written after the bar
    marker: float | None = None  # a limit's position (0..1), drawn as a line
    css: str = ""


@dataclass(frozen=True, slots=True)
class Column:
    """One day of a stacked column chart: segments from the bottom up (heights 0..1)."""

    label: str
    segments: tuple[Segment, ...]
    total: str
    show_label: bool


@dataclass(slots=True)
class Chart:
    id: str
    title: str
    desc: str
    rows: list[Row] = field(default_factory=list)
    columns: list[Column] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)  # (colour class, name)
    table: list[list[str]] = field(default_factory=list)  # header row first
    empty: str = "No data in this period."


def _scale(values: Iterable[float]) -> float:
    top = max(values, default=0.0)
    return top if top > 0 else 1.0


def _colours(names: Sequence[str]) -> dict[str, str]:
    return {name: "c0" if name == OTHER and i == SERIES else f"c{i + 1}" for i, name in enumerate(names)}


def spend_chart(
    points: Sequence[SpendPoint],
    *,
    days: int,
    today: datetime,
    usd: Callable[[float | None], str],
    label: Callable[[str], str] = str,
    by: str = "model",
) -> Chart:
    """Stacked columns of cost per day, one colour per series (the costliest first)."""
    first = (today - timedelta(days=days - 1)).strftime("%Y-%m-%d")
    ranked = _by_total(points)
    shown = {s: label(s) for s in ranked[:SERIES]}  # the costliest; the rest are added up as "other"
    names = [*shown.values(), *([OTHER] if len(ranked) > SERIES else [])]
    colour = _colours(names)
    per_day: dict[str, dict[str, float]] = {}
    for p in points:
        if p.day >= first:
            cell = per_day.setdefault(p.day, {})
            name = shown.get(p.series, OTHER)
            cell[name] = cell.get(name, 0.0) + p.cost
    day_list = [(today - timedelta(days=days - 1 - i)).strftime("%Y-%m-%d") for i in range(days)]
    top = _scale(sum(v.values()) for v in per_day.values())
    every = max(1, round(days / 4))
    chart = Chart(
        f"chart-spend-{by}",
        f"Spend per day by {by}",
        f"Cost of model calls per UTC day over the last {days} days, stacked by {by}; "
        f"the tallest day is {usd(top if per_day else 0.0)}.",
        legend=[(colour[n], n) for n in names],
    )
    for i, day in enumerate(day_list):
        cell = per_day.get(day, {})
        y, segments = 0.0, []
        for name in names:
            cost = cell.get(name, 0.0)
            if cost > 0:
                height = cost / top
                segments.append(Segment(colour[name], y, height, f"{name} {usd(cost)}"))
                y += height
        chart.columns.append(Column(day, tuple(segments), usd(sum(cell.values())), i % every == 0 or i == days - 1))
    chart.table = [["Day", *names, "Total"]] + [
        [day, *(usd(per_day[day].get(n, 0.0)) for n in names), usd(sum(per_day[day].values()))]
        for day in day_list
        if day in per_day
    ]
    if not per_day:
        chart.columns = []
    return chart


def _by_total(points: Sequence[SpendPoint]) -> list[str]:
    totals: dict[str, float] = {}
    for p in points:
        totals[p.series] = totals.get(p.series, 0.0) + p.cost
    return sorted(totals, key=lambda s: (-totals[s], s))


def budget_chart(rows: Sequence[tuple[str, float, float, str]], usd: Callable[[float | None], str]) -> Chart:
    """Per key with a budget: ``(key label, spent, limit, period)``; the limit is the full track."""
    chart = Chart(
        "chart-budgets",
        "Key budgets",
        "Spend of each key with a budget in its current period, against its limit (the line).",
        empty="No key has a budget.",
    )
    for name, spent, limit, period in rows:
        share = spent / limit if limit > 0 else 0.0
        css = "over" if share >= 1 else ("near" if share >= 0.8 else "c1")
        width = min(share, 1 / LIMIT_AT) * LIMIT_AT
        when = "in total" if period == "total" else f"this {period}"
        text = f"{usd(spent)} of {usd(limit)} {when} ({share:.0%})"
        chart.rows.append(Row(name, (Segment(css, 0.0, width, text),), text, marker=LIMIT_AT, css=css))
    return chart


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def latency_chart(stats: Sequence[ModelStats]) -> tuple[Chart, Chart]:
    """Error rate per model, and p50/p95 latency per model (the p50 drawn inside the p95)."""
    errors = Chart("chart-errors", "Error rate per model", "Share of calls that failed, per model.")
    top = _scale(s.error_rate for s in stats)
    for s in stats:
        text = f"{s.error_rate:.1%} ({s.errors} of {_count(s.calls, 'call')})"
        width = s.error_rate / top
        errors.rows.append(Row(s.model, (Segment("over" if s.errors else "c2", 0.0, width, text),), text))
    latency = Chart(
        "chart-latency",
        "Latency per model",
        "Median (p50, filled) and 95th percentile (p95, outlined) latency of each model's calls.",
        legend=[("c1", "p50"), ("c1 outline", "p95")],
    )
    top = _scale(s.p95_s for s in stats)
    for s in stats:
        text = f"p50 {_ms(s.p50_s)} · p95 {_ms(s.p95_s)}"
        p95 = Segment("c1 outline", 0.0, s.p95_s / top, f"{s.model} p95: {_ms(s.p95_s)}")
        p50 = Segment("c1", 0.0, s.p50_s / top, f"{s.model} p50: {_ms(s.p50_s)}")
        latency.rows.append(Row(s.model, (p95, p50), text))
    return errors, latency


def duration_chart(stats: Sequence[DurationStats]) -> Chart:
    chart = Chart(
        "chart-durations",
        "Run durations per pipeline",
        "Median (p50, filled) and 95th percentile (p95, outlined) duration of the runs that finished, per pipeline.",
        legend=[("c3", "p50"), ("c3 outline", "p95")],
    )
    top = _scale(s.p95_s for s in stats)
    for s in stats:
        failed = f", {s.failed} failed" if s.failed else ""
        text = f"p50 {_ms(s.p50_s)} · p95 {_ms(s.p95_s)} · max {_ms(s.max_s)} ({_count(s.runs, 'run')}{failed})"
        p95 = Segment("c3 outline", 0.0, s.p95_s / top, f"{s.pipeline} p95: {_ms(s.p95_s)}")
        p50 = Segment("c3", 0.0, s.p50_s / top, f"{s.pipeline} p50: {_ms(s.p50_s)}")
        chart.rows.append(Row(s.pipeline, (p95, p50), text))
    return chart


def utc_day(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
