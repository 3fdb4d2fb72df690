"""``ModelCall``: what one model call did, as the operator's dashboard shows it.

A call's record: the prompt and the answer (cut to :data:`MAX_TEXT` characters; the
store redacts secrets before it keeps them), the latency and, for streams, the time to
the first chunk of text, the deployment that answered (the router's ``tier``, else the
answering model), whether the response cache answered, the retries and routing moves
taken on the way, tokens, cost and the trace id of the OpenTelemetry context the call
ran in. :class:`legato.observe.Recorded` (and :class:`legato.observe.Instrumented`
given ``on_call``) builds one per call, in ``legato.observe._observer``.

The retries and moves are learnt from the resilience events that wrappers and routers
publish on :data:`legato.resilience.default_hub` while the call runs: a context
variable (``moves``) holds the list of the call in flight, so concurrent calls never
mix their events. The first recording observer subscribes one listener to the hub, for
the life of the process (the hub is itself process-wide); events outside a recorded
call cost one context-variable read.
"""

from __future__ import annotations

import contextvars
import inspect
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from typing import Any

from legato.observe._tracing import step_parent_context
from legato.providers import ChatChunk, ChatRequest, EmbedRequest
from legato.resilience import FallbackTaken, ResilienceEvent, RetryScheduled, default_hub

__all__ = [
    "MAX_TEXT",
    "CallSink",
    "Final",
    "ModelCall",
    "OpenCall",
    "current_trace_id",
    "listen",
    "moves",
    "note_final",
    "prompt_text",
    "report",
]

MAX_TEXT = 4000
"""Characters of prompt and of answer kept per call (the rest is cut, with a marker)."""

CallSink = Callable[["ModelCall"], Awaitable[None] | None]


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

moves: contextvars.ContextVar[list[ResilienceEvent] | None] = contextvars.ContextVar("legato_call_moves", default=None)
_listening = False
_listen_lock = threading.Lock()


def _collect(event: ResilienceEvent) -> None:
    found = moves.get()
    if found is not None and isinstance(event, FallbackTaken | RetryScheduled):
        found.append(event)


def listen() -> None:
    """Subscribe the collector of the calls' resilience events to the hub (once per process)."""
    global _listening
    with _listen_lock:
        if not _listening:
            default_hub.subscribe(_collect)
            _listening = True


class OpenCall:
    """What is known of a call while it runs (built when it starts)."""

    __slots__ = ("at", "model", "moves", "prompt", "trace_id", "ttft_s")

    def __init__(self, model: str, request: ChatRequest | EmbedRequest) -> None:
        self.model = model
        self.prompt = prompt_text(request)
        self.at = time.time()
        self.trace_id = current_trace_id()
        self.moves: list[ResilienceEvent] = []
        self.ttft_s: float | None = None

    def joins(self, span: Any) -> None:
        """The call's own span: its trace is the record's when no caller's trace was
        current (a call that started a trace of its own)."""
        if self.trace_id is None:
            context = span.get_span_context()
            if context.is_valid:
                self.trace_id = format(context.trace_id, "032x")

    def finish(
        self, status: str, latency_s: float, response: Any = None, answer: str = "", error: str | None = None
    ) -> ModelCall:
        usage = getattr(response, "usage", None)
        retries = 0
        path: tuple[dict[str, str], ...] = ()
        if self.moves:
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
            latency_s=latency_s,
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


async def report(on_call: CallSink, call: ModelCall) -> None:
    """Hand ``call`` to ``on_call``, awaiting what it returns when that is awaitable."""
    result = on_call(call)
    if result is not None and inspect.isawaitable(result):
        await result


def note_final(last: dict[str, Any], chunk: ChatChunk) -> None:
    """Keep what ``chunk`` says of the stream's model, provider, usage and cost."""
    for name in ("model", "provider", "usage", "cost"):
        value = getattr(chunk, name, None)
        if value:
            last[name] = value


class Final:
    """A stream's last word on model, provider, usage and cost, read like a response."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.model = values.get("model")
        self.provider = values.get("provider")
        self.usage = values.get("usage")
        self.cost = values.get("cost")
        self.tier = None  # a stream does not say which tier answered; the model does
        self.cached = False
