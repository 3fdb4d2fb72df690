"""Any Python callable as a Model.

``PythonModel(fn)`` wraps a function of a :class:`ChatRequest` that returns a
``str``, a :class:`Message` or a whole :class:`ChatResponse`; it may be sync (run in
a worker thread so it never blocks the event loop, unless ``thread=False``) or
async. A sync or async *generator* function streams: each yielded ``str`` or
:class:`ChatChunk` becomes a chunk. ``embed_fn`` (``list[str] -> list[list[float]]``,
sync or async) makes it embed.

Usage is estimated from characters when the function does not report it; cost is 0
unless ``price=`` is given (a local function spends no money).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio.to_thread

from legato.errors import BadRequest, LegatoError, ModelError, ServerError
from legato.providers._http import embed_response, record_call
from legato.providers._pricing import Price
from legato.providers._tokens import estimate_text_tokens, estimate_tokens
from legato.providers._types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbedRequest,
    EmbedResponse,
    Message,
    Usage,
)
from legato.providers._validate import validate_chat, validate_embed

__all__ = ["PythonModel"]


class PythonModel:
    """A Model backed by a Python function.

    Args:
        fn: ``fn(request) -> str | Message | ChatResponse`` (sync or async), or a
            generator function yielding ``str`` / ``ChatChunk`` pieces.
        name: the model name reported in responses and the ledger (default: the
            function's name).
        embed_fn: ``fn(texts) -> vectors`` for :meth:`embed`.
        price: price per 1M tokens (default free).
        thread: run a sync ``fn`` in a worker thread (default True).
        chunk_chars: when ``fn`` is not a generator, :meth:`stream` splits its text
            into pieces of this many characters.

    An exception raised by ``fn`` that is not a :class:`legato.errors.ModelError`
    is wrapped in :class:`~legato.errors.ServerError` (not retryable), so callers
    see one error tree.
    """

    provider = "python"

    def __init__(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        embed_fn: Callable[[list[str]], Any] | None = None,
        price: Price | None = None,
        thread: bool = True,
        chunk_chars: int = 16,
        provider: str = "python",
    ) -> None:
        if fn is None and embed_fn is None:
            raise TypeError("PythonModel needs fn (chat) or embed_fn (embed)")
        self.fn = fn
        self.embed_fn = embed_fn
        self.name: str = name or str(getattr(fn or embed_fn, "__name__", "python"))
        self.price = price
        self.thread = thread
        self.chunk_chars = chunk_chars
        self.provider = provider
        self._kinds: dict[int, tuple[Callable[..., Any], _Kind]] = {}  # by id(fn): what kind of callable

    def __repr__(self) -> str:
        return f"PythonModel({self.name!r})"

    async def aclose(self) -> None:
        return None

    async def warm_up(self) -> None:
        return None

    # ------------------------------------------------------------------ helpers

    async def _call(self, fn: Callable[..., Any], arg: Any) -> Any:
        try:
            if self._kind(fn).coroutine:
                return await fn(arg)
            if self.thread:
                result = await anyio.to_thread.run_sync(fn, arg)
            else:
                result = fn(arg)
            if inspect.isawaitable(result):
                return await result
            return result
        except LegatoError:
            raise
        except Exception as exc:
            raise self._wrap(exc) from exc

    def _wrap(self, exc: Exception) -> ModelError:
        return ServerError(f"{type(exc).__name__}: {exc}", provider=self.provider, model=self.name, retryable=False)

    def _cost(self, usage: Usage) -> float:
        return (self.price or Price(input=0.0)).cost(usage)

    def _usage(self, request: ChatRequest, text: str) -> Usage:
        return Usage(input_tokens=estimate_tokens(request), output_tokens=estimate_text_tokens(text))

    def _kind(self, fn: Callable[..., Any]) -> _Kind:
        found = self._kinds.get(id(fn))
        if found is None or found[0] is not fn:  # a function set since, or an id reused
            found = self._kinds[id(fn)] = (fn, _Kind(fn))
        return found[1]

    def _is_generator(self) -> bool:
        return self.fn is not None and self._kind(self.fn).generator

    def _response(self, request: ChatRequest, result: Any, started: float) -> ChatResponse:
        latency = time.perf_counter() - started
        if isinstance(result, ChatResponse):
            usage = result.usage
            cost = result.cost if result.cost is not None else self._cost(usage)
            return result.model_copy(update={"cost": cost, "latency_s": result.latency_s or latency})
        if isinstance(result, Message):
            message = result
        elif isinstance(result, str):
            message = Message(role="assistant", content=result)
        else:
            raise ServerError(
                f"the function of python model {self.name!r} returned {type(result).__name__}; "
                "expected str, Message or ChatResponse",
                provider=self.provider,
                model=self.name,
                retryable=False,
            )
        usage = self._usage(request, message.text)
        finish = "tool_calls" if message.tool_calls else "stop"
        return ChatResponse(
            message=message,
            model=self.name,
            provider=self.provider,
            finish_reason=finish,
            usage=usage,
            cost=self._cost(usage),
            latency_s=latency,
        )

    # ------------------------------------------------------------------ Model

    async def chat(self, request: ChatRequest) -> ChatResponse:
        validate_chat(request, provider=self.provider, model=self.name)
        if self.fn is None:
            raise BadRequest(
                f"python model {self.name!r} has no chat function", provider=self.provider, model=self.name
            )
        started = time.perf_counter()
        if self._is_generator():
            from legato.providers._assemble import collect

            response = await collect(self._generate(request), model=self.name, provider=self.provider)
            return response.model_copy(update={"latency_s": time.perf_counter() - started})
        response = self._response(request, await self._call(self.fn, request), started)
        record_call(model=response.model, provider=self.provider, usage=response.usage, cost=response.cost)
        return response

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        validate_chat(request, provider=self.provider, model=self.name)
        if self.fn is None:
            raise BadRequest(
                f"python model {self.name!r} has no chat function", provider=self.provider, model=self.name
            )
        if self._is_generator():
            async for chunk in self._generate(request):
                yield chunk
            return
        response = self._response(request, await self._call(self.fn, request), time.perf_counter())
        text = response.text
        for i in range(0, len(text), self.chunk_chars):
            yield ChatChunk(text=text[i : i + self.chunk_chars], model=response.model, provider=self.provider)
        if response.message.tool_calls:
            from legato.providers._types import ToolCallDelta

            deltas = [
                ToolCallDelta(index=i, id=c.id, name=c.name, arguments=c.arguments)
                for i, c in enumerate(response.message.tool_calls)
            ]
            yield ChatChunk(tool_calls=deltas, model=response.model, provider=self.provider)
        record_call(model=response.model, provider=self.provider, usage=response.usage, cost=response.cost)
        yield ChatChunk(
            finish_reason=response.finish_reason,
            usage=response.usage,
            cost=response.cost,
            model=response.model,
            provider=self.provider,
        )

    async def _generate(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Chunks of a generator function, then the final chunk with usage and cost."""
        assert self.fn is not None
        texts: list[str] = []
        finish: str | None = None
        try:
            if inspect.isasyncgenfunction(self.fn):
                async for piece in self.fn(request):
                    chunk = self._chunk(piece)
                    finish = chunk.finish_reason or finish
                    texts.append(chunk.text)
                    yield chunk
            else:
                iterator: Iterator[Any] = self.fn(request)
                done = object()
                while (piece := await anyio.to_thread.run_sync(next, iterator, done)) is not done:
                    chunk = self._chunk(piece)
                    finish = chunk.finish_reason or finish
                    texts.append(chunk.text)
                    yield chunk
        except LegatoError:
            raise
        except Exception as exc:
            raise self._wrap(exc) from exc
        usage = self._usage(request, "".join(texts))
        cost = self._cost(usage)
        record_call(model=self.name, provider=self.provider, usage=usage, cost=cost)
        yield ChatChunk(finish_reason=finish or "stop", usage=usage, cost=cost, model=self.name, provider=self.provider)

    def _chunk(self, piece: Any) -> ChatChunk:
        if isinstance(piece, ChatChunk):
            return piece.model_copy(
                update={"model": piece.model or self.name, "provider": self.provider, "usage": None}
            )
        if isinstance(piece, str):
            return ChatChunk(text=piece, model=self.name, provider=self.provider)
        raise ServerError(
            f"the generator of python model {self.name!r} yielded {type(piece).__name__}; expected str or ChatChunk",
            provider=self.provider,
            model=self.name,
            retryable=False,
        )

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        validate_embed(request, provider=self.provider, model=self.name)
        if self.embed_fn is None:
            raise BadRequest(f"python model {self.name!r} does not embed", provider=self.provider, model=self.name)
        started = time.perf_counter()
        vectors = await self._call(self.embed_fn, list(request.inputs))
        try:
            vectors = [[float(x) for x in v] for v in vectors]
        except (TypeError, ValueError) as exc:
            raise ServerError(
                f"the embed function of {self.name!r} returned no vectors: {exc}",
                provider=self.provider,
                model=self.name,
                retryable=False,
            ) from exc
        if len(vectors) != len(request.inputs):
            raise ServerError(
                f"the embed function of {self.name!r} returned {len(vectors)} vectors for {len(request.inputs)} inputs",
                provider=self.provider,
                model=self.name,
                retryable=False,
            )
        usage = Usage(input_tokens=sum(estimate_text_tokens(t) for t in request.inputs))
        cost = self._cost(usage)
        return embed_response(
            vectors=vectors,
            model=self.name,
            provider=self.provider,
            usage=usage,
            cost=cost,
            latency_s=time.perf_counter() - started,
        )


class _Kind:
    """What kind of callable a model's function is, worked out once per function (the
    ``inspect`` checks cost a few microseconds, on every call of an in-process model)."""

    __slots__ = ("coroutine", "generator")

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.coroutine = inspect.iscoroutinefunction(fn)
        self.generator = inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn)
