"""The model routes' fast path: ``POST /v1/chat/completions``, ``/v1/messages`` and
``/v1/embeddings`` answered by one pure ASGI layer instead of FastAPI's routing.

FastAPI's per-request machinery (matching the path against every route, solving the
key dependency and the security schemes, the exception middleware, the route's
request wrapper) cost more CPU than the rest of a proxied model call
(``bench/gateway_cpu.py``, docs/benchmarks.md). The routes stay declared on FastAPI:
they make the OpenAPI document, and they answer whatever this layer does not take.

:class:`ModelRoutes` is the innermost middleware, below :mod:`legato.server._protect`
(which has identified the key from the headers and read the body). It takes a model
call when the route would accept it as it is:

- the key was identified from the headers (the scope state holds it);
- the body is declared ``application/json`` and parses strictly
  (:func:`legato.server._body.parse_json`'s parser) and validates against the route's
  request model.

Anything else goes on to the FastAPI route with its body, which answers exactly as it
always has (invalid JSON, then the key's scope, then validation, each with its own
message in the client's format). A call this layer takes is served by the route's own
handler (:data:`legato.server._gateway.MODEL_HANDLERS`) after the same scope check,
and its errors are rendered as the app's exception handlers render them.
"""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute
from pydantic import ValidationError
from pydantic_core import from_json
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from legato.errors import LegatoError
from legato.server._auth import IDENTIFIED, admit
from legato.server._body import replay
from legato.server._errors import GatewayError, error_response, from_exception
from legato.server._gateway import MODEL_HANDLERS, ModelHandler, router

__all__ = ["ModelRoutes"]

_JSON_TYPES = frozenset({b"application/json", b"application/json; charset=utf-8", b"application/json;charset=utf-8"})


class ModelRoutes:
    """Serves the model routes' well-formed calls; passes everything else to ``app``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # The FastAPI route of each path: what a matched request's scope carries (its
        # template labels the request's metrics and span).
        self._routes = {
            path: next(
                r for r in router.routes if isinstance(r, APIRoute) and r.path == path and "POST" in (r.methods or ())
            )
            for path in MODEL_HANDLERS
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = MODEL_HANDLERS.get(scope["path"]) if scope["type"] == "http" else None
        key = scope.get("state", {}).get(IDENTIFIED)
        if handler is None or key is None or scope["method"] != "POST" or not _json_typed(scope):
            await self.app(scope, receive, send)
            return
        body = await _read(receive)
        if body is None:
            return  # the client left before its body arrived: nobody to answer
        parsed = _parse(handler, body)
        if parsed is None:  # the route answers: its own errors, in its own order
            await self.app(scope, replay(body, receive), send)
            return
        scope["route"] = self._routes[scope["path"]]
        request = Request(scope, receive)
        try:
            admit(scope, key, handler.scope)
            response = await handler.serve(parsed, request, key)
        except GatewayError as exc:
            response = error_response(request, exc)
        except LegatoError as exc:
            response = error_response(request, from_exception(exc))
        await response(scope, receive, send)


def _json_typed(scope: Scope) -> bool:
    """True when the request says its body is plain JSON (FastAPI reads a body without a
    content type as no JSON at all: those go to the route)."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            return value.lower() in _JSON_TYPES
    return False


async def _read(receive: Receive) -> bytes | None:
    """The whole body (the protection layer has read it: one message); None on a disconnect."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _parse(handler: ModelHandler, body: bytes) -> Any:
    """The request model of ``body``, or None when the route must answer it."""
    try:
        return handler.body.model_validate(from_json(body, allow_inf_nan=False))
    except (ValueError, ValidationError):
        return None
