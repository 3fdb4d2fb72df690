"""Structured JSON logs with secrets redacted, on the standard ``logging`` module.

Every record becomes one JSON object per line: ``ts`` (ISO 8601, UTC), ``level``,
``logger``, ``msg``, the record's ``extra`` fields, ``exc`` for exceptions,
``trace_id``/``span_id`` when an OpenTelemetry span is current, so a log line can
be joined to its trace, and ``request_id`` while a gateway request is being served
(:data:`request_id`, set by the gateway for each request). The message, the extras and the traceback all pass through
a :class:`~legato.observe.Redactor` before they are written.

Stdlib ``logging`` rather than a structured-logging library: every dependency
(uvicorn, httpx, SQLAlchemy) already logs through it, so one formatter on one
handler covers them all, and a JSON formatter is a few lines. Lines are encoded with
orjson (about a tenth of ``json.dumps``'s time on an access-log line, which every
request writes); numbers that are not finite become null, so every line is valid JSON.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Iterable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal, TextIO, cast

import orjson

from legato.redaction import Redactor, default_redactor

__all__ = ["JsonFormatter", "RedactingFilter", "configure_logging", "direct_handler", "request_id"]

request_id: ContextVar[str | None] = ContextVar("legato_request_id", default=None)
"""The id of the HTTP request being served (``x-request-id``), added to every log line."""

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys() | {"message", "asctime", "taskName"}
)


_SCALARS = frozenset({int, float, bool, type(None)})


def _trace_ids() -> tuple[str, str] | None:
    # Only the API is needed to read the current span; without an SDK it is invalid.
    context = sys.modules.get("opentelemetry.context")
    if context is None or not context.get_current():
        return None  # nothing made any context current: no span
    from opentelemetry import trace

    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def _finite(value: Any) -> Any:
    """``value`` with floats that are not numbers as null, as orjson writes them (the
    standard library would write ``NaN``, which is not JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    return repr(value)


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON with secrets redacted.

    ``static`` fields (``service``, ``replica``...) are added to every line.
    """

    def __init__(self, redactor: Redactor | None = None, *, static: dict[str, Any] | None = None) -> None:
        super().__init__()
        self._redactor = redactor
        self.static = dict(static or {})
        # For the redactor they were worked out with: whether each extra field's name is
        # sensitive, and recent short values found clean. The same few names and
        # values (method, path, model, key prefix) come on every access-log line.
        self._memo: tuple[Redactor | None, dict[str, bool], dict[str, str]] = (None, {}, {})

    @property
    def redactor(self) -> Redactor:
        return self._redactor or default_redactor()

    def format(self, record: logging.LogRecord) -> str:
        extras = ((k, v) for k, v in record.__dict__.items() if k not in _RECORD_ATTRS and not k.startswith("_"))
        out = self._fields(record.created, record.levelname, record.name, record.getMessage(), extras)
        r = self.redactor
        if record.exc_info:
            out["exc"] = r.text(self.formatException(record.exc_info))
        elif record.exc_text:
            out["exc"] = r.text(record.exc_text)
        if record.stack_info:
            out["stack"] = r.text(self.formatStack(record.stack_info))
        return _dumps(out)

    def line(self, created: float, levelname: str, name: str, message: str, extras: dict[str, Any]) -> str:
        """The line :meth:`format` writes for a record with these attributes and
        ``extras`` (no exception, no stack), without making the record."""
        return _dumps(self._fields(created, levelname, name, message, extras.items()))

    def _fields(
        self, created: float, levelname: str, name: str, message: str, extras: Iterable[tuple[str, Any]]
    ) -> dict[str, Any]:
        r = self.redactor
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds"),
            "level": levelname.lower(),
            "logger": name,
            "msg": r.text(message),
            **self.static,
        }
        sensitive, texts = self._memos(r)
        for key, value in extras:
            hidden = sensitive.get(key)
            if hidden is None:
                hidden = sensitive[key] = r.is_sensitive_key(key)
            if hidden:
                out[key] = r.replacement
            elif type(value) in _SCALARS:
                out[key] = value  # nothing to redact in a number
            elif type(value) is str:
                out[key] = _redacted(r, value, texts)
            else:
                out[key] = r.value(_jsonable(value))
        rid = request_id.get()
        if rid is not None:
            out.setdefault("request_id", rid)
        ids = _trace_ids()
        if ids is not None:
            out["trace_id"], out["span_id"] = ids
        return out

    def _memos(self, redactor: Redactor) -> tuple[dict[str, bool], dict[str, str]]:
        owner, names, texts = self._memo
        if owner is not redactor:
            names, texts = {}, {}
            self._memo = (redactor, names, texts)
        return names, texts


def _dumps(out: dict[str, Any]) -> str:
    try:
        return orjson.dumps(out, default=repr, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # an integer past 64 bits: the standard library writes it
        return json.dumps(_finite(out), ensure_ascii=False, default=repr)


def direct_handler(logger: logging.Logger, level: int) -> logging.StreamHandler[TextIO] | None:
    """The one handler a record of ``logger`` at ``level`` would reach, when that is a
    handler of :func:`configure_logging` writing JSON and nothing on the way filters or
    copies the record; None otherwise (the record must then go through ``logging``).

    Lets a caller that writes a line per request (the gateway's access log) format it
    with :meth:`JsonFormatter.line` and write it under the handler's lock, the same line
    ``logging`` would write, without making a ``LogRecord`` and passing it through the
    logger hierarchy (together about half the line's cost)."""
    found: logging.StreamHandler[TextIO] | None = None
    node: logging.Logger | None = logger
    while node is not None:
        if node.filters or node.disabled:
            return None
        for handler in node.handlers:
            if found is not None or not getattr(handler, "_legato", False) or handler.filters:
                return None
            if level < handler.level or type(handler.formatter) is not JsonFormatter:
                return None
            found = cast("logging.StreamHandler[TextIO]", handler)
        node = node.parent if node.propagate else None
    return found


_MEMO_TEXT = 256  # longest value whose redacted form is remembered
_MEMO_SIZE = 4096  # values remembered; the memo starts again when full


def _redacted(redactor: Redactor, value: str, memo: dict[str, str]) -> str:
    """``redactor.text(value)``, remembered for short values with nothing to redact (a
    redactor is immutable)."""
    found = memo.get(value)
    if found is None:
        found = redactor.text(value)
        if found == value and len(value) <= _MEMO_TEXT:  # never keeps a value that held a secret
            if len(memo) >= _MEMO_SIZE:
                memo.clear()
            memo[value] = found
    return found


class RedactingFilter(logging.Filter):
    """Redacts a record in place, for handlers that keep their own text formatter.

    The message is rendered (``msg % args``), redacted and stored back with empty
    args; an exception's traceback is rendered and redacted into ``exc_text``.
    """

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self._redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        r = self._redactor or default_redactor()
        record.msg = r.text(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = r.text(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        for key, value in list(record.__dict__.items()):
            if key not in _RECORD_ATTRS and not key.startswith("_"):
                setattr(record, key, r.replacement if r.is_sensitive_key(key) else r.value(value))
        return True


def configure_logging(
    level: str | int = "INFO",
    *,
    format: Literal["json", "text"] = "json",
    redactor: Redactor | None = None,
    stream: TextIO | None = None,
    logger: str = "",
    static: dict[str, Any] | None = None,
) -> logging.Handler:
    """Send ``logger`` (the root logger by default) to ``stream`` (stderr) as redacted
    JSON lines (``format="json"``) or redacted text, and return the handler.

    A handler installed by an earlier call on the same logger is replaced, so calling
    it twice does not duplicate lines. Unknown level names raise ``ValueError``.
    """
    if isinstance(level, str):
        numeric = logging.getLevelName(level.upper())
        if not isinstance(numeric, int):
            raise ValueError(f"unknown log level {level!r}; use debug, info, warning, error or critical")
        level = numeric
    target = logging.getLogger(logger)
    for old in [h for h in target.handlers if getattr(h, "_legato", False)]:
        target.removeHandler(old)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._legato = True  # type: ignore[attr-defined]
    if format == "json":
        handler.setFormatter(JsonFormatter(redactor, static=static))
    elif format == "text":
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.addFilter(RedactingFilter(redactor))
    else:
        raise ValueError(f"unknown log format {format!r}; use 'json' or 'text'")
    target.addHandler(handler)
    target.setLevel(level)
    return handler
