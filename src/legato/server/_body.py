"""Request bodies read strictly: what is not valid JSON text is the client's mistake.

Python's ``json`` accepts more than JSON: escapes of lone UTF-16 surrogates
(``"\\ud800"``), surrogates encoded in the UTF-8 bytes, and ``NaN``/``Infinity``.
Such a string survives validation and fails later, while legato encodes the
upstream request, where it would look like an upstream failure. Every route of
the gateway therefore parses its JSON body with pydantic-core's parser (jiter, in
Rust), which refuses all of these, and answers 400 naming the problem and where it
is, before any handler runs. On the (rare) error path the body is parsed again with
the standard library to say which field holds the invalid text.

:class:`StrictJSONRoute` is the ``route_class`` of every gateway router. The same
rule covers the other bodies the gateway reads: JSON-RPC messages at ``/mcp`` and the
dashboard's forms (:func:`parse_form`: strict UTF-8, including percent-escapes, and
JSON fields through :func:`parse_json`).
"""

from __future__ import annotations

import functools
import json
import typing
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import parse_qs

from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, model_validator
from pydantic_core import from_json
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive

__all__ = ["InvalidBody", "StrictJSONRoute", "WireModel", "parse_form", "parse_json", "replay"]

_NESTING = 200  # jiter's recursion limit


class InvalidBody(HTTPException):
    """A body that is not valid JSON text (400 ``invalid_request_error``)."""

    def __init__(self, message: str) -> None:
        super().__init__(400, message)


def parse_json(body: bytes, what: str = "the body") -> Any:
    """The JSON value of ``body``; :class:`InvalidBody` naming the problem (in ``what``) otherwise."""
    try:
        return from_json(body, allow_inf_nan=False)
    except ValueError:
        raise InvalidBody(_diagnose(body, what)) from None


def parse_form(body: bytes) -> dict[str, list[str]]:
    """An ``application/x-www-form-urlencoded`` body (blank values kept); :class:`InvalidBody`
    when it, or a percent-escape in it, is not valid UTF-8 (never silently replaced)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidBody(f"the form is not valid UTF-8 (byte {exc.start} is 0x{body[exc.start]:02x})") from None
    try:
        return parse_qs(text, keep_blank_values=True, errors="strict")
    except UnicodeDecodeError as exc:
        bad = exc.object[exc.start]
        raise InvalidBody(f"the form is not valid UTF-8 (a percent-escape decodes to byte 0x{bad:02x})") from None


def _diagnose(body: bytes, what: str = "the body") -> str:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"{what} is not valid UTF-8 (byte {exc.start} is 0x{body[exc.start]:02x})"

    def constant(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON value")

    try:
        value = json.loads(text, parse_constant=constant)
    except json.JSONDecodeError as exc:
        return f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    except ValueError as exc:
        return f"{what} is not valid JSON: {exc}"
    except RecursionError:
        return f"{what} is nested deeper than {_NESTING} levels"
    where = _lone_surrogate(value, "")
    if where is not None:
        path, char = where
        at = f" in {path}" if path else ""
        return f"invalid Unicode{at}: lone surrogate U+{ord(char):04X} (a UTF-16 surrogate escape without its pair)"
    return f"{what} is not valid JSON or is nested deeper than {_NESTING} levels"


def _lone_surrogate(value: Any, path: str) -> tuple[str, str] | None:
    """(JSON path, character) of the first string holding a lone surrogate."""
    if isinstance(value, str):
        bad = next((c for c in value if "\ud800" <= c <= "\udfff"), None)
        return (path, bad) if bad is not None else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _lone_surrogate(key, path) or _lone_surrogate(item, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _lone_surrogate(item, f"{path}.{index}" if path else str(index))
            if found is not None:
                return found
    return None


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` giving ``body`` (already read in full), then what the server says next (a disconnect)."""
    pending = True

    async def replayed() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


class WireModel(BaseModel):
    """Base of the gateway's request bodies: JSON types as sent (strict: ``max_tokens: true``
    and ``stream: "yes"`` are errors, not 1 and True), with JSON Schema's ``integer``:
    ``2.0`` is the integer 2."""

    model_config = ConfigDict(strict=True)

    @model_validator(mode="before")
    @classmethod
    def _json_integers(cls, data: Any) -> Any:
        ints = _integer_fields(cls)
        if not ints or not isinstance(data, dict):
            return data
        return {k: int(v) if k in ints and isinstance(v, float) and v.is_integer() else v for k, v in data.items()}


@functools.cache
def _integer_fields(model: type[BaseModel]) -> frozenset[str]:
    return frozenset(
        name
        for name, info in model.model_fields.items()
        if info.annotation is int or int in typing.get_args(info.annotation)
    )


class _StrictRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """An ``APIRoute`` whose JSON body is parsed by :func:`parse_json`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(_StrictRequest(request.scope, request.receive))

        return strict
