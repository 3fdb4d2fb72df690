"""One reading of a runs listing's query, for ``GET /v1/runs``, the dashboard and the
``list_runs`` MCP tool.

Parameters (all optional): ``q`` (words of inputs, outputs and errors, or a run id
prefix), ``status``, ``pipeline``, ``key`` (a key id or its visible prefix),
``tags`` (comma-separated, every one must be carried), ``since`` and ``until``
(``YYYY-MM-DD``, UTC, both days included), ``min_cost``/``max_cost`` (USD),
``min_duration_s``/``max_duration_s``, ``sort`` (``newest``, ``oldest``), ``limit``
(1-500) and ``cursor`` (the ``next_cursor`` of the previous page).

The API and MCP read them strictly (a malformed value is an error naming the
parameter); the dashboard leniently (a malformed value is dropped, the page still renders). The
ownership rule is applied by the caller through ``tenant``: a key sees only its
own runs whatever it asks for.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from legato.store._search import RunFilter, check_tags

__all__ = ["STATUSES", "QueryError", "RunQuery", "next_cursor", "resolve_key", "run_query"]

STATUSES = ("pending", "queued", "running", "waiting", "succeeded", "failed", "cancelled", "dead")
TEXT_FIELDS = {"q": 500, "pipeline": 255, "key": 255}
NUMBER_FIELDS = ("min_cost", "max_cost", "min_duration_s", "max_duration_s")
DAY = 86400.0


class QueryError(ValueError):
    """A parameter that cannot be read (``param`` names it)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = message


@dataclass(frozen=True)
class RunQuery:
    """A listing's filter, page size, order and position, and the parameters that were
    understood (``params``: what links to other pages and the filter form keep)."""

    where: RunFilter
    limit: int = 50
    oldest_first: bool = False
    cursor: tuple[float, str] | None = None
    params: dict[str, str] = field(default_factory=dict)

    def with_key(self, key_id: str) -> RunQuery:
        """The same query with ``key`` (an id or a prefix) resolved to a key id."""
        return replace(self, where=replace(self.where, key=key_id))


def run_query(params: Mapping[str, Any], *, tenant: str | None, strict: bool, default_limit: int = 50) -> RunQuery:
    """The listing ``params`` ask for, restricted to ``tenant`` (None: every tenant)."""
    given = {k: str(v).strip() for k, v in params.items() if v is not None and str(v).strip() != ""}
    kept: dict[str, str] = {}
    values: dict[str, Any] = {}
    for name, reader in _READERS.items():
        if name not in given:
            continue
        try:
            values[name] = reader(given[name])
        except (ValueError, OverflowError) as exc:
            if strict:
                raise QueryError(name, str(exc)) from None
            continue
        kept[name] = given[name]
    where = RunFilter(
        status=(values["status"],) if "status" in values else (),
        pipeline=values.get("pipeline"),
        tenant=tenant,
        key=values.get("key"),
        since=values.get("since"),
        until=values["until"] + DAY if "until" in values else None,
        text=values.get("q", ""),
        tags=values.get("tags", ()),
        **{name: values.get(name) for name in NUMBER_FIELDS},
    )
    limit = values.get("limit", default_limit)
    kept.pop("cursor", None)  # the position is not a filter
    return RunQuery(where, limit, values.get("sort") == "oldest", values.get("cursor"), kept)


async def resolve_key(query: RunQuery, keys: Any) -> RunQuery:
    """``query`` with its ``key`` (an id or a visible prefix) resolved through the key
    store ``keys``; a value no key answers to is kept as an id (it matches the runs of
    that id, such as ``master``, or none)."""
    if query.where.key is None or keys is None:
        return query
    known = await keys.get(query.where.key)
    return query.with_key(known.id if known is not None else query.where.key)


def next_cursor(page: list[Any], limit: int) -> str | None:
    """The cursor of the page after ``page`` (fetched with ``limit + 1`` rows), or None."""
    if len(page) <= limit or not page:
        return None
    last = page[limit - 1]
    return f"{last.created_at!r}_{last.id}"


def _text(name: str) -> Any:
    def read(value: str) -> str:
        if len(value) > TEXT_FIELDS[name]:
            raise ValueError(f"at most {TEXT_FIELDS[name]} characters")
        return value

    return read


def _status(value: str) -> str:
    if value not in STATUSES:
        raise ValueError(f"{value!r} is not one of {', '.join(STATUSES)}")
    return value


def _day(value: str) -> float:
    try:
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise ValueError(f"{value!r} is not a day written YYYY-MM-DD") from None


def _amount(value: str) -> float:
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{value!r} is not a number of zero or more")
    return number


def _tags(value: str) -> tuple[str, ...]:
    return check_tags(t.strip() for t in value.split(",") if t.strip())


def _sort(value: str) -> str:
    if value not in ("newest", "oldest"):
        raise ValueError(f"{value!r} is not newest or oldest")
    return value


def _limit(value: str) -> int:
    number = int(value)
    if not 1 <= number <= 500:
        raise ValueError(f"{number} is not between 1 and 500")
    return number


def _cursor(value: str) -> tuple[float, str]:
    at, _, run_id = value.partition("_")
    if not run_id or len(run_id) > 64 or not math.isfinite(float(at)):
        raise ValueError("not a cursor given by a previous page")
    return float(at), run_id


_READERS: dict[str, Any] = {
    "q": _text("q"), "status": _status, "pipeline": _text("pipeline"), "key": _text("key"), "tags": _tags,
    "since": _day, "until": _day, **dict.fromkeys(NUMBER_FIELDS, _amount), "sort": _sort, "limit": _limit,
    "cursor": _cursor,
}  # fmt: skip
