"""OpenAI- and Anthropic-compatible model routes.

Each request goes: key (401) -> body validation (400) -> scope and model (403) ->
model lookup (404) -> request limits (400) -> SSRF check of user URLs (400) -> the
key's budget (the call's worst case reserved) and RPM/TPM (429; 503 when the limits
store is unreachable and fails closed) -> the model (through whatever routing,
resilience, cache and budget wrappers the catalog applies) -> the answer -> the real
usage settled against the key once the answer is sent (the reservation released in
full when the call failed; a stream settles after its last event).
Everything before the model call happens without any provider call.

Streams are started before the response is: an error before the first chunk is
answered with its proper status; an error after it is sent in the stream in the
client's format (OpenAI ``data: {"error": ...}``, Anthropic ``event: error``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import orjson
from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from legato.cost._budget import shielded
from legato.errors import URLNotAllowed
from legato.providers import ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, Model, Usage
from legato.server import _anthropic_wire as aw
from legato.server import _openai_wire as ow
from legato.server._access import Exchange, exchange
from legato.server._auth import check_model, require
from legato.server._body import StrictJSONRoute, WireModel
from legato.server._calls import calls_of
from legato.server._errors import GatewayError, error_responses
from legato.server._keys import ApiKey
from legato.server._limits import Admission
from legato.server._state import Gateway
from legato.server._streams import EventStream, Upstream, within

__all__ = ["MODEL_HANDLERS", "ModelHandler", "router"]

router = APIRouter(route_class=StrictJSONRoute)
R = TypeVar("R", ChatResponse, EmbedResponse)

_ERRORS = error_responses(
    {
        400: "Invalid request: the body, a field or a limit (`invalid_request_error`)",
        401: "Missing, unknown or revoked API key",
        403: "The key lacks the scope or the model",
        404: "No such model",
        413: "Body too large",
        429: "Rate limit, budget or overload; see Retry-After",
    }
)


def gateway(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _model_json(data: dict[str, Any]) -> bytes:
    """A model route's answer (a completion, a message, embeddings) as compact JSON, by orjson:
    an embeddings answer of a few thousand floats costs a millisecond of CPU with the standard
    library and a few dozen microseconds this way. A value orjson refuses (an integer wider than
    64 bits) is written by the standard library instead; ``NaN`` becomes ``null``."""
    try:
        return orjson.dumps(data)
    except orjson.JSONEncodeError:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


class SettledAfter(Response):
    """A model route's JSON answer whose call is settled once the answer has been handed
    to the server, or could not be (the client gone, the send failed): the key's TPM
    count and budget charge, a Redis or database round trip each in production, are
    not on the request's path. Until then the call's worst case stays held, so a
    budget never admits more than it would have; TPM counts a finished call a send
    later, as it counts calls in flight not at all."""

    media_type = "application/json"

    def __init__(self, body: bytes, settle: Callable[[], Awaitable[None]]) -> None:
        super().__init__(body)
        self._settle = settle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._settle()


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in err["loc"])
        lines.append(f"{loc}: {err['msg']}" if loc else str(err["msg"]))
    return "; ".join(lines)


def _note_model(request: Request, model: str) -> Exchange | None:
    ex = exchange(request)
    if ex is not None:
        ex.model = model
    return ex


def _note_quota(ex: Exchange | None, admission: Admission) -> None:
    """What is left of the key's limits goes out as ``x-ratelimit-*`` headers."""
    if ex is not None and admission.quota is not None:
        ex.headers.update(admission.quota.headers())


async def _prepare(
    ex: Exchange | None,
    gw: Gateway,
    key: ApiKey,
    model_name: str,
    build: Callable[[dict[str, Any]], ChatRequest],
    urls: list[str],
    n_messages: int,
    max_tokens: int | None,
) -> tuple[Model, ChatRequest, Admission]:
    settings = gw.settings
    check_model(key, model_name)
    model = served = gw.model(model_name)  # 404 first: nothing else matters for a model that is not served
    calls_of(key.id)  # this request's model calls are kept as the key's
    # Outside routing (a blocked request never reaches a deployment) and around the
    # observer (the call kept for the dashboard is the one the model saw).
    if key.guardrail is not None:
        from legato.guardrails import apply

        model = apply(key.guardrail, model)
    if n_messages > settings.max_messages:
        raise GatewayError(
            400, "invalid_request", f"too many messages: {n_messages} > {settings.max_messages}", param="messages"
        )
    if max_tokens is not None and max_tokens > settings.max_output_tokens:
        raise GatewayError(
            400,
            "invalid_request",
            f"max_tokens {max_tokens} exceeds this gateway's limit of {settings.max_output_tokens}",
            param="max_tokens",
        )
    try:
        request = build({"api_key": key.prefix, "tenant": key.name})
    except ValidationError as exc:
        raise GatewayError(400, "invalid_request", _describe(exc)) from None
    except ValueError as exc:
        raise GatewayError(400, "invalid_request", str(exc)) from None
    try:
        await gw.ssrf.check_all(urls)
    except URLNotAllowed as exc:
        raise GatewayError(400, "invalid_request", str(exc), code="url_not_allowed") from None
    # Priced on the served model (planned once per model): the key's guardrail around
    # it does not change what it can cost.
    admission = await gw.limiter.admit(key, gw.worst_case(request, served))
    _note_quota(ex, admission)
    return model, request, admission


async def _settle(
    gw: Gateway, admission: Admission, model: str, usage: Usage, cost: float | None, ex: Exchange | None
) -> None:
    gw.record_usage(admission.key, model, usage.input_tokens, usage.output_tokens, cost)
    if ex is not None:
        ex.used(usage.input_tokens, usage.output_tokens, cost)
    await admission.settle(tokens=usage.total_tokens, cost=cost)  # shielded where it waits


async def _answer(
    gw: Gateway,
    admission: Admission,
    name: str,
    call: Awaitable[R],
    ex: Exchange | None,
    render: Callable[[R], dict[str, Any]],
) -> Response:
    """Await a model call and answer with ``render`` of it; its real usage is settled
    once the answer is sent (:class:`SettledAfter`), its reservation released in full
    when it failed."""
    started = time.monotonic()
    try:
        resp = await within(call, gw.settings.upstream_timeout_s)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await admission.settle(tokens=0, cost=0.0)
        raise
    if ex is not None:
        ex.upstream_s += time.monotonic() - started

    async def settle() -> None:
        with shielded(gw.limiter):
            await _settle(gw, admission, name, resp.usage, resp.cost, ex)

    try:
        body = _model_json(render(resp))
    except BaseException:
        await settle()
        raise
    return SettledAfter(body, settle)


async def _start_stream(
    gw: Gateway, admission: Admission, model: Model, name: str, request: ChatRequest, ex: Exchange | None
) -> Upstream:
    async def settle(usage: Usage, cost: float | None) -> None:
        await _settle(gw, admission, name, usage, cost, ex)

    up = Upstream(aiter(model.stream(request)), gw.settings.upstream_timeout_s, settle)
    started = time.monotonic()
    await up.start()
    if ex is not None:  # the wait for the first chunk: what admission's sample leaves out
        ex.upstream_s += time.monotonic() - started
    return up


_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@router.post("/v1/chat/completions", tags=["OpenAI"], responses=_ERRORS, summary="Chat completion (OpenAI format)")
async def chat_completions(
    body: ow.ChatCompletionRequest, request: Request, key: ApiKey = Depends(require("chat"))
) -> Response:
    return await _chat_completions(body, request, key)


def _subject(request: Request) -> dict[str, str]:
    """``X-Legato-Subject``: the data subject a call is about; the response cache tags
    the entry with it so that ``DELETE /v1/subjects/{id}`` can erase it."""
    subject = request.headers.get("x-legato-subject")
    if subject is None:
        return {}
    if not 0 < len(subject) <= 255:
        raise GatewayError(400, "invalid_request", "X-Legato-Subject must be 1 to 255 characters", param="subject")
    return {"subject": subject}


async def _chat_completions(body: ow.ChatCompletionRequest, request: Request, key: ApiKey) -> Response:
    gw = gateway(request)
    ex = _note_model(request, body.model)
    max_tokens = body.max_completion_tokens or body.max_tokens
    model, creq, admission = await _prepare(
        ex,
        gw,
        key,
        body.model,
        lambda md: ow.chat_request(body, metadata={**md, **_subject(request)}),
        ow.image_urls(body),
        len(body.messages),
        max_tokens,
    )
    if not body.stream:
        return await _answer(gw, admission, body.model, model.chat(creq), ex, lambda r: ow.completion(r, body.model))
    up = await _start_stream(gw, admission, model, body.model, creq, ex)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return EventStream(up, ow.ChunkWriter(body.model, include_usage), _SSE_HEADERS)


@router.post("/v1/messages", tags=["Anthropic"], responses=_ERRORS, summary="Create a message (Anthropic format)")
async def messages(body: aw.MessagesRequest, request: Request, key: ApiKey = Depends(require("chat"))) -> Response:
    return await _messages(body, request, key)


async def _messages(body: aw.MessagesRequest, request: Request, key: ApiKey) -> Response:
    gw = gateway(request)
    ex = _note_model(request, body.model)
    model, creq, admission = await _prepare(
        ex,
        gw,
        key,
        body.model,
        lambda md: aw.chat_request(body, metadata={**md, **_subject(request)}),
        aw.image_urls(body),
        len(body.messages),
        body.max_tokens,
    )
    if not body.stream:
        return await _answer(gw, admission, body.model, model.chat(creq), ex, lambda r: aw.message(r, body.model))
    up = await _start_stream(gw, admission, model, body.model, creq, ex)
    return EventStream(up, aw.StreamWriter(body.model), _SSE_HEADERS)


@router.post("/v1/embeddings", tags=["OpenAI"], responses=_ERRORS, summary="Embeddings (OpenAI format)")
async def embeddings(body: ow.EmbeddingRequest, request: Request, key: ApiKey = Depends(require("embed"))) -> Response:
    return await _embeddings(body, request, key)


async def _embeddings(body: ow.EmbeddingRequest, request: Request, key: ApiKey) -> Response:
    gw = gateway(request)
    ex = _note_model(request, body.model)
    check_model(key, body.model)
    inputs = [body.input] if isinstance(body.input, str) else body.input
    model = gw.model(body.model)
    calls_of(key.id)
    metadata = {"api_key": key.prefix, **_subject(request)}
    ereq = EmbedRequest(inputs=inputs, model=body.model, dimensions=body.dimensions, metadata=metadata)
    admission = await gw.limiter.admit(key, gw.worst_case(ereq, model))
    _note_quota(ex, admission)
    return await _answer(
        gw, admission, body.model, model.embed(ereq), ex, lambda r: ow.embeddings(r, body.model, body.encoding_format)
    )


def _model_object(name: str, anthropic: bool) -> dict[str, Any]:
    if anthropic:
        return {"type": "model", "id": name, "display_name": name, "created_at": "1970-01-01T00:00:00Z"}
    return {"id": name, "object": "model", "created": 0, "owned_by": "legato"}


@router.get("/v1/models", tags=["OpenAI", "Anthropic"], responses=_ERRORS, summary="Models this key may use")
async def list_models(request: Request, key: ApiKey = Depends(require(None))) -> Response:
    gw = gateway(request)
    names = [n for n in gw.catalog.names() if key.allows_model(n)]
    anthropic = "anthropic-version" in request.headers
    data = [_model_object(n, anthropic) for n in names]
    if anthropic:
        first, last = (names[0], names[-1]) if names else (None, None)
        return json_response({"data": data, "has_more": False, "first_id": first, "last_id": last})
    return json_response({"object": "list", "data": data})


@router.get("/v1/models/{model_id:path}", tags=["OpenAI", "Anthropic"], responses=_ERRORS, summary="One model")
async def get_model(model_id: str, request: Request, key: ApiKey = Depends(require(None))) -> Response:
    """404 ``model_not_found`` for a model this gateway does not serve or this key may not use
    (the same answer for both, so a key cannot probe for models it was not given)."""
    if model_id not in gateway(request).catalog.names() or not key.allows_model(model_id):
        raise GatewayError(404, "not_found", f"model {model_id!r} does not exist", code="model_not_found")
    return json_response(_model_object(model_id, "anthropic-version" in request.headers))


@router.post(
    "/v1/messages/count_tokens",
    tags=["Anthropic"],
    responses=_ERRORS,
    summary="Count the input tokens of a message (an estimate; no provider call)",
)
async def count_tokens(
    body: aw.CountTokensRequest, request: Request, key: ApiKey = Depends(require("chat"))
) -> Response:
    """``{"input_tokens": N}``, estimated offline as budgets estimate it (a little pessimistic):
    nothing is sent to a provider and nothing is counted against the key's limits."""
    from legato.providers import estimate_tokens

    gw = gateway(request)
    _note_model(request, body.model)
    check_model(key, body.model)
    try:
        chat = aw.count_request(body)
    except ValidationError as exc:
        raise GatewayError(400, "invalid_request", _describe(exc)) from None
    except ValueError as exc:
        raise GatewayError(400, "invalid_request", str(exc)) from None
    provider = getattr(gw.catalog.get(body.model), "provider", None)
    return json_response({"input_tokens": estimate_tokens(chat, provider if isinstance(provider, str) else None)})


@dataclass(frozen=True, slots=True)
class ModelHandler:
    """What a model route is made of: its request body, the scope it needs and the
    handler both the FastAPI route and the fast path (:mod:`legato.server._model_routes`) call."""

    body: type[WireModel]
    scope: str
    serve: Callable[[Any, Request, ApiKey], Awaitable[Response]]


MODEL_HANDLERS: dict[str, ModelHandler] = {
    "/v1/chat/completions": ModelHandler(ow.ChatCompletionRequest, "chat", _chat_completions),
    "/v1/messages": ModelHandler(aw.MessagesRequest, "chat", _messages),
    "/v1/embeddings": ModelHandler(ow.EmbeddingRequest, "embed", _embeddings),
}
