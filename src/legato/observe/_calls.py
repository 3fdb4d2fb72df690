"""``Recorded``: a Model wrapper that reports every call as a :class:`ModelCall`.

What one call did, as the operator's dashboard shows it: the prompt and the answer
(cut to :data:`MAX_TEXT` characters; the store redacts secrets before it keeps
them), the latency and, for streams, the time to the first chunk of text, the
deployment that answered (the router's ``tier``, else the answering model), whether
the response cache answered, the retries and routing moves taken on the way, tokens,
cost and the trace id of the OpenTelemetry context the call ran in.

The retries and moves are learnt from the resilience events that wrappers and routers
publish on :data:`legato.resilience.default_hub` while the call runs: a context
variable holds the list of the call in flight, so concurrent calls never mix their
events. The first :class:`Recorded` subscribes one listener to the hub, for the life
of the process (the hub is itself process-wide); events outside a recorded call cost
one context-variable read.

``on_call`` is called once per finished call (also when it failed; not when the
caller stopped reading a stream or was cancelled). It may be a coroutine function;
an exception from it propagates, so a sink that must not fail a call catches its own.
"""

from __future__ import annotations

import contextvars
import inspect
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from legato.observe._instrument import error_type
from legato.observe._tracing import step_parent_context
from legato.providers import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbedRequest,
    EmbedResponse,
    Model,
    ModelWrapper,
    close_stream,
)
from legato.resilience import FallbackTaken, ResilienceEvent, RetryScheduled, default_hub

__all__ = ["MAX_TEXT", "ModelCall", "Recorded", "current_trace_id"]

MAX_TEXT = 4000
"""Characters of prompt and of answer kept per call (the rest is cut, with a marker)."""

CallSink = Callable[["ModelCall"], Awaitable[None] | None]
Resp = TypeVar("Resp", ChatResponse, EmbedResponse)


@dataclass(frozen=True, slots=True)
class ModelCall:
    """One finished model call. ``status`` is ``"ok"`` or the error's class name."""

    model: str
    status: str
    at: float  # wall-clock start, epoch seconds
    latency_s: float
    deployment: str | None = None
    provider: str | None = None
    ttft_s: float | None = None
    cached: bool = False
    retries: int = 0
    path: tuple[dict[str, str], ...] = ()  # routing moves: failed, target, error, kind
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float | None = None
    trace_id: str | None = None
    prompt: str = ""
    answer: str = ""
    error: str | None = None

    @property
    def fallbacks(self) -> int:
        return len(self.path)

    def as_dict(self) -> dict[str, Any]:
        """Plain data (what a run event carries and the store reads). Built field by field:
        ``dataclasses.asdict`` deep-copies every value and cost more than the call's row."""
        data = {name: getattr(self, name) for name in _FIELDS}
        data["path"] = [dict(p) for p in self.path]
        return data


_FIELDS = tuple(f.name for f in fields(ModelCall))


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + f"… [{len(text) - MAX_TEXT} more characters]"


def _content(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return " ".join(getattr(part, "text", None) or f"[{getattr(part, 'type', 'part')}]" for part in content)


def prompt_text(request: ChatRequest | EmbedRequest) -> str:
    """The request as a person reads it: one ``role: text`` line per message (or the inputs)."""
    if isinstance(request, EmbedRequest):
        return _cut("\n".join(request.inputs))
    return _cut("\n".join(f"{m.role}: {_content(m.content)}" for m in request.messages))


def current_trace_id() -> str | None:
    """The 32-hex trace id of the current OpenTelemetry context (or the running step's), if any."""
    if "opentelemetry.trace" not in sys.modules:
        return None  # nothing imported tracing: no context can be current
    from opentelemetry import trace

    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        parent = step_parent_context()
        if parent is None:
            return None
        span_context = trace.get_current_span(parent).get_span_context()
        if not span_context.is_valid:
            return None
    return format(span_context.trace_id, "032x")


# -- the resilience events of the call in flight ------------------------------------

_moves: contextvars.ContextVar[list[ResilienceEvent] | None] = contextvars.ContextVar("legato_call_moves", default=None)
_listening = False
_listen_lock = threading.Lock()


def _collect(event: ResilienceEvent) -> None:
    moves = _moves.get()
    if moves is not None and isinstance(event, FallbackTaken | RetryScheduled):
        moves.append(event)


def _listen() -> None:
    global _listening
    with _listen_lock:
        if not _listening:
            default_hub.subscribe(_collect)
            _listening = True


@dataclass(slots=True)
class _Call:
    """What is known of a call while it runs."""

    model: str
    prompt: str
    at: float = field(default_factory=time.time)
    started: float = field(default_factory=time.perf_counter)
    trace_id: str | None = field(default_factory=current_trace_id)
    moves: list[ResilienceEvent] = field(default_factory=list)
    ttft_s: float | None = None

    def finish(self, status: str, response: Any = None, answer: str = "", error: str | None = None) -> ModelCall:
        usage = getattr(response, "usage", None)
        retries = sum(1 for e in self.moves if isinstance(e, RetryScheduled))
        path = tuple(
            {"failed": e.failed, "target": e.target, "error": e.error, "kind": e.kind}
            for e in self.moves
            if isinstance(e, FallbackTaken)
        )
        model = getattr(response, "model", None)
        return ModelCall(
            model=self.model,
            status=status,
            at=self.at,
            latency_s=time.perf_counter() - self.started,
            deployment=getattr(response, "tier", None) or model or None,
            provider=getattr(response, "provider", None) or None,
            ttft_s=self.ttft_s,
            cached=bool(getattr(response, "cached", False)),
            retries=retries,
            path=path,
            input_tokens=usage.input_tokens if usage is not None else 0,
            output_tokens=usage.output_tokens if usage is not None else 0,
            cost=getattr(response, "cost", None),
            trace_id=self.trace_id,
            prompt=self.prompt,
            answer=_cut(answer),
            error=error,
        )


class Recorded(ModelWrapper):
    """Reports each ``chat``, ``stream`` and ``embed`` of ``inner`` to ``on_call``."""

    def __init__(self, inner: Model, on_call: CallSink, *, name: str | None = None) -> None:
        super().__init__(inner, name=name)
        self.on_call = on_call
        _listen()

    async def _report(self, call: ModelCall) -> None:
        result = self.on_call(call)
        if inspect.isawaitable(result):
            await result

    async def chat(self, request: ChatRequest) -> ChatResponse:
        return await self._observed(self.inner.chat, request)

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        return await self._observed(self.inner.embed, request)

    async def _observed(self, fn: Callable[[Any], Awaitable[Resp]], request: ChatRequest | EmbedRequest) -> Resp:
        call = _Call(self.name, prompt_text(request))
        token = _moves.set(call.moves)
        try:
            response = await fn(request)
        except Exception as exc:
            _moves.reset(token)
            await self._report(call.finish(error_type(exc), error=str(exc)))
            raise
        except BaseException:
            _moves.reset(token)
            raise
        _moves.reset(token)
        answer = response.text if isinstance(response, ChatResponse) else f"{len(response.vectors)} vectors"
        await self._report(call.finish("ok", response, answer))
        return response

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        call = _Call(self.name, prompt_text(request))
        iterator = aiter(self.inner.stream(request))
        pieces: list[str] = []
        size = 0
        last: dict[str, Any] = {}
        try:
            while True:
                # Set around each step of the inner stream, never across a yield.
                token = _moves.set(call.moves)
                try:
                    chunk = await anext(iterator)
                except StopAsyncIteration:
                    break
                finally:
                    _moves.reset(token)
                if chunk.text:
                    if call.ttft_s is None:
                        call.ttft_s = time.perf_counter() - call.started
                    if size <= MAX_TEXT:
                        pieces.append(chunk.text)
                        size += len(chunk.text)
                _note(last, chunk)
                yield chunk
        except Exception as exc:
            await self._report(call.finish(error_type(exc), _Final(last), "".join(pieces), str(exc)))
            raise
        finally:
            await close_stream(iterator)
        await self._report(call.finish("ok", _Final(last), "".join(pieces)))


def _note(last: dict[str, Any], chunk: ChatChunk) -> None:
    for name in ("model", "provider", "usage", "cost"):
        value = getattr(chunk, name, None)
        if value:
            last[name] = value


class _Final:
    """A stream's last word on model, provider, usage and cost, read like a response."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.model = values.get("model")
        self.provider = values.get("provider")
        self.usage = values.get("usage")
        self.cost = values.get("cost")
        self.tier = None  # a stream does not say which tier answered; the model does
        self.cached = False
