"""The response cache: a ``Model`` wrapper that answers repeated requests from a backend.

What is cached, and when:

* successful ``chat``, ``stream`` and ``embed`` answers only: an error is never
  stored (and with single-flight it still reaches every waiter of that call);
* a request with ``temperature > 0`` is not cached unless ``cache_sampled=True``
  (a sampled answer is meant to vary); ``temperature`` left unset is cached;
* ``request.metadata["cache"]`` decides per call: ``False`` (or ``"off"``,
  ``"no-store"``) bypasses the cache entirely; ``"refresh"`` (or ``"no-cache"``)
  skips the lookup but stores the fresh answer; ``True``/absent follows the policy;
* ``with legato.cache.bypass():`` does the same for every call made inside a
  block (a Python step, a gateway request), ``bypass(refresh=True)`` refreshes;
* ``request.metadata["tenant"]`` scopes keys next to ``namespace``: tenants never
  share entries;
* ``request.metadata["subject"]`` tags the entry with a data subject (a customer id)
  in backends that keep a subject index, so :func:`legato.cache.erase_subject` can
  delete it;
* with ``sealing`` (a :class:`~legato.cache.Sealing`, e.g. the run store's envelope
  keys) values are encrypted before they reach the backend, and an unsealed entry
  found under a key is deleted and treated as a miss: a protected cache never writes
  or serves plaintext.

A hit is returned with ``cached=True`` and ``cost=0.0`` and recorded on the current
ledger as a cached call whose ``saved`` is what the original call cost. A stream
hit is replayed chunk for chunk (the chunk carrying the cost says ``0.0``).

Backend failures (a Redis outage, a locked SQLite file) never fail a call: the call
goes upstream and the failure is logged and counted in :attr:`ResponseCache.stats`.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from contextlib import aclosing, contextmanager
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import anyio
from pydantic import TypeAdapter, ValidationError

from legato.cache._backends import CacheBackend, MemoryBackend
from legato.cache._keys import chat_key, embed_key
from legato.cache._protect import Sealing, SubjectIndex, subject_digest
from legato.cache._single_flight import SingleFlight
from legato.errors import BadRequest
from legato.ledger import CallRecord, current_ledger
from legato.providers import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbedRequest,
    EmbedResponse,
    Model,
    ModelWrapper,
    close_stream,
    closing_stream,
)

__all__ = ["CacheStats", "ResponseCache", "bypass"]

log = logging.getLogger("legato.cache")

V = TypeVar("V")

Mode = Literal["read", "write"]
_OFF = (False, "off", "no-store")
_REFRESH = ("refresh", "no-cache")
_ON = (True, None, "on")
_chunks = TypeAdapter(list[ChatChunk])


@dataclass
class CacheStats:
    """Counters of one cache wrapper (read them, do not write them)."""

    hits: int = 0
    misses: int = 0
    bypassed: int = 0
    shared: int = 0  # answered by another caller's in-flight call (single-flight)
    stored: int = 0
    backend_errors: int = 0


class ResponseCache(ModelWrapper):
    """Cache the answers of ``inner`` in ``backend`` (an in-memory LRU by default).

    Args:
        inner: the model whose answers are cached.
        backend: where entries live: :class:`MemoryBackend`, :class:`SQLiteBackend`,
            :class:`RedisBackend` or anything implementing :class:`CacheBackend`.
        namespace: scopes every key; caches with different namespaces never share.
        ttl: seconds an entry lives (``None``: until evicted).
        cache_sampled: also cache requests with ``temperature > 0``.
        single_flight: identical concurrent requests share one upstream call.
        sealing: encrypts values on their way to the backend (see the module docstring).
    """

    def __init__(
        self,
        inner: Model,
        backend: CacheBackend | None = None,
        *,
        namespace: str = "default",
        ttl: float | None = 3600.0,
        cache_sampled: bool = False,
        single_flight: bool = True,
        sealing: Sealing | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(inner, name=name)
        self.sealing = sealing
        if ttl is not None and ttl <= 0:
            raise ValueError(f"ttl must be > 0 seconds or None, got {ttl}")
        self.backend: CacheBackend = backend if backend is not None else MemoryBackend()
        self.namespace = namespace
        self.ttl = ttl
        self.cache_sampled = cache_sampled
        self.single_flight = single_flight
        self.stats = CacheStats()
        self._flights: SingleFlight[Any] = SingleFlight()

    def __repr__(self) -> str:
        return f"ResponseCache({self.inner!r}, backend={self.backend!r}, namespace={self.namespace!r})"

    # -- policy ---------------------------------------------------------------------

    def mode(self, request: ChatRequest | EmbedRequest) -> Mode | None:
        """``"read"`` (look up, store on a miss), ``"write"`` (store only) or ``None`` (bypass)."""
        return cache_mode(request, cache_sampled=self.cache_sampled)

    # -- chat -----------------------------------------------------------------------

    async def chat(self, request: ChatRequest) -> ChatResponse:
        mode = self.mode(request)
        if mode is None:
            self.stats.bypassed += 1
            return await self.inner.chat(request)
        key = chat_key(request, model=request.model or self.inner.name, namespace=self.namespace)

        async def fetch() -> tuple[ChatResponse, bool]:
            if mode == "read":
                raw = await self._load(key)
                if raw is not None:
                    try:
                        return ChatResponse.model_validate_json(raw), True
                    except ValidationError:
                        await self._forget(key)
            self.stats.misses += 1
            response = await self.inner.chat(request)
            await self._save(key, response.model_dump_json().encode(), request)
            return response, False

        response, from_cache, shared = await self._once((key, mode), fetch)
        if from_cache or shared:
            return self._hit(response, shared=shared and not from_cache)
        return response

    def _hit(self, response: ChatResponse, *, shared: bool) -> ChatResponse:
        self._count_hit(shared)
        record_hit(response.model, response.provider, response.cost)
        return response.model_copy(update={"cached": True, "cost": 0.0})

    # -- embed ----------------------------------------------------------------------

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        mode = self.mode(request)
        if mode is None:
            self.stats.bypassed += 1
            return await self.inner.embed(request)
        key = embed_key(request, model=request.model or self.inner.name, namespace=self.namespace)

        async def fetch() -> tuple[EmbedResponse, bool]:
            if mode == "read":
                raw = await self._load(key)
                if raw is not None:
                    try:
                        return EmbedResponse.model_validate_json(raw), True
                    except ValidationError:
                        await self._forget(key)
            self.stats.misses += 1
            response = await self.inner.embed(request)
            await self._save(key, response.model_dump_json().encode(), request)
            return response, False

        response, from_cache, shared = await self._once((key, mode), fetch)
        if from_cache or shared:
            self._count_hit(shared and not from_cache)
            record_hit(response.model, response.provider, response.cost)
            return response.model_copy(update={"cached": True, "cost": 0.0})
        return response

    # -- stream ---------------------------------------------------------------------

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        mode = self.mode(request)
        if mode is None:
            self.stats.bypassed += 1
            async with closing_stream(self.inner.stream(request)) as chunks:
                async for chunk in chunks:
                    yield chunk
            return
        key = chat_key(request, model=request.model or self.inner.name, namespace=self.namespace, stream=True)
        flight_key = (key, mode)
        flight = self._flights.join(flight_key) if self.single_flight else None
        try:
            while flight is not None and not flight.try_lead():
                if flight.done:
                    for chunk in self._replay(flight.outcome(), shared=True):
                        yield chunk
                    return
                await flight.wait()
            if mode == "read":
                cached = await self._load_chunks(key)
                if cached is not None:
                    if flight is not None:
                        self._flights.land(flight_key, flight, cached)
                    for chunk in self._replay(cached, shared=False):
                        yield chunk
                    return
            self.stats.misses += 1
            async with aclosing(self._stream_upstream(request, key, flight_key, flight)) as live:
                async for chunk in live:
                    yield chunk
        finally:
            if flight is not None:
                self._flights.leave(flight_key, flight)

    async def _stream_upstream(
        self, request: ChatRequest, key: str, flight_key: object, flight: Any
    ) -> AsyncGenerator[ChatChunk, None]:
        chunks: list[ChatChunk] = []
        upstream = self.inner.stream(request)
        try:
            async for chunk in upstream:
                chunks.append(chunk)
                yield chunk
        except BaseException as exc:
            ended = chunks and chunks[-1].finish_reason is not None
            if isinstance(exc, GeneratorExit | anyio.get_cancelled_exc_class()) and not ended:
                if flight is not None:
                    flight.abandon()  # the consumer left early: another waiter streams instead
            elif isinstance(exc, GeneratorExit | anyio.get_cancelled_exc_class()):
                await self._finish_stream(request, key, flight_key, flight, chunks)  # left after the final chunk
            elif flight is not None:
                self._flights.land(flight_key, flight, error=exc)
            raise
        finally:
            await close_stream(upstream)
        await self._finish_stream(request, key, flight_key, flight, chunks)

    async def _finish_stream(
        self, request: ChatRequest, key: str, flight_key: object, flight: Any, chunks: list[ChatChunk]
    ) -> None:
        if flight is not None:
            self._flights.land(flight_key, flight, chunks)
        with anyio.CancelScope(shield=True):
            await self._save(key, _chunks.dump_json(chunks), request)

    def _replay(self, chunks: list[ChatChunk], *, shared: bool) -> list[ChatChunk]:
        self._count_hit(shared)
        priced = [c for c in chunks if c.cost is not None]
        last = chunks[-1] if chunks else None
        record_hit(
            (last.model if last else None) or self.inner.name,
            (last.provider if last else None) or "",
            sum(c.cost for c in priced if c.cost is not None) if priced else None,
        )
        return [c.model_copy(update={"cost": 0.0}) if c.cost is not None else c for c in chunks]

    async def _load_chunks(self, key: str) -> list[ChatChunk] | None:
        raw = await self._load(key)
        if raw is None:
            return None
        try:
            return _chunks.validate_json(raw)
        except ValidationError:
            await self._forget(key)
            return None

    # -- plumbing -------------------------------------------------------------------

    async def _once(
        self, flight_key: tuple[str, Mode], fetch: Callable[[], Awaitable[tuple[V, bool]]]
    ) -> tuple[V, bool, bool]:
        """Run ``fetch`` (single-flighted); returns (value, from_cache, shared_with_another_caller)."""
        if not self.single_flight:
            value, from_cache = await fetch()
            return value, from_cache, False
        led = False

        async def lead() -> tuple[V, bool]:
            nonlocal led
            led = True
            return await fetch()

        result: tuple[V, bool] = await self._flights.do(flight_key, lead)
        return result[0], result[1], not led

    def _count_hit(self, shared: bool) -> None:
        if shared:
            self.stats.shared += 1
        else:
            self.stats.hits += 1

    async def _load(self, key: str) -> bytes | None:
        try:
            raw = await self.backend.get(key)
        except Exception as exc:
            self._backend_failed("read", exc)
            return None
        if raw is None or self.sealing is None:
            return raw
        try:
            opened = self.sealing.open(raw)
        except Exception as exc:  # a value sealed with a key this process does not hold
            self._backend_failed("open", exc)
            return None
        if opened is None:  # plaintext stored before protection was turned on
            await self._forget(key)
        return opened

    async def _save(self, key: str, value: bytes, request: ChatRequest | EmbedRequest) -> None:
        subject = request.metadata.get("subject")
        try:
            await self.backend.set(key, self.sealing.seal(value) if self.sealing is not None else value, self.ttl)
            if subject is not None and isinstance(self.backend, SubjectIndex):
                await self.backend.tag(subject_digest(str(subject)), key, self.ttl)
        except Exception as exc:
            self._backend_failed("write", exc)
        else:
            self.stats.stored += 1

    async def _forget(self, key: str) -> None:
        try:
            await self.backend.delete(key)
        except Exception as exc:
            self._backend_failed("delete", exc)

    def _backend_failed(self, action: str, exc: Exception) -> None:
        self.stats.backend_errors += 1
        log.warning("cache %s failed on %r: %s: %s", action, self.backend, type(exc).__name__, exc)

    async def aclose(self) -> None:
        try:
            await self.backend.aclose()
        finally:
            await self.inner.aclose()


_override: contextvars.ContextVar[str | None] = contextvars.ContextVar("legato_cache_override", default=None)


@contextmanager
def bypass(*, refresh: bool = False) -> Iterator[None]:
    """Skip response caches for every call made inside the block (a step, a request).

    ``refresh=True`` skips the lookups but stores the fresh answers. The setting
    follows the task tree and worker threads, like the usage ledger. A request's own
    ``metadata["cache"]`` still wins.
    """
    token = _override.set("refresh" if refresh else "off")
    try:
        yield
    finally:
        _override.reset(token)


def cache_mode(request: ChatRequest | EmbedRequest, *, cache_sampled: bool) -> Mode | None:
    """The caching decision for one request (see the module docstring)."""
    flag = request.metadata.get("cache", _override.get())
    if flag in _OFF:
        return None
    if flag in _REFRESH:
        mode: Mode = "write"
    elif flag in _ON:
        mode = "read"
    else:
        raise BadRequest(
            f"metadata['cache'] must be true, false, 'refresh' or 'no-cache', 'off' or 'no-store'; got {flag!r}"
        )
    if isinstance(request, ChatRequest) and request.temperature and not cache_sampled:
        return None
    return mode


def record_hit(model: str, provider: str, original_cost: float | None) -> None:
    ledger = current_ledger()
    if ledger is not None:
        ledger.record(CallRecord(model=model, provider=provider, cost=0.0, cached=True, saved=original_cost or 0.0))
