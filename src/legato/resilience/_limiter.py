"""``RateLimiter``: keep a deployment under its requests- and tokens-per-minute limits.

Two token buckets refilled continuously (``rpm / 60`` requests and ``tpm / 60``
tokens per second, burst = one minute's worth). Before a call the limiter takes
one request and an *estimate* of the call's tokens (prompt characters / 4 plus
``max_tokens``, or a fixed default); after the call it *reconciles* with the real
usage the provider reported, so an over-estimate is given back and an
under-estimate becomes debt that delays the next caller.

When the buckets are short, ``wait=True`` sleeps (through the injected clock)
until they refill, up to ``max_wait`` seconds; otherwise, or beyond that, the
call fails fast with :class:`RateLimited` (``provider="legato"``, with
``retry_after``), which a router treats like an upstream 429 without counting it
against the deployment's health.

Written here rather than with ``aiolimiter``/``limits``: those have no token
reconciliation after the fact and read the wall clock.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from legato.errors import RateLimited
from legato.providers import ChatChunk, ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, Model, ModelWrapper
from legato.resilience._breaker import LOCAL_PROVIDER
from legato.resilience._clock import Clock, SystemClock
from legato.resilience._events import EventHub, RateLimitWaited, default_hub
from legato.resilience._streaming import close_stream, open_stream

__all__ = ["RateLimitPolicy", "RateLimiter", "estimate_tokens"]


class RateLimitPolicy(BaseModel):
    """Limits of one deployment. ``None`` means unlimited."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rpm: int | None = Field(default=None, ge=1, description="requests per minute")
    tpm: int | None = Field(default=None, ge=1, description="tokens (input + output) per minute")
    wait: bool = Field(default=True, description="wait for capacity instead of failing fast")
    max_wait: float = Field(default=30.0, ge=0, description="longest wait in seconds before failing")
    default_output_tokens: int = Field(default=256, ge=0, description="output estimate without max_tokens")


def estimate_tokens(request: ChatRequest | EmbedRequest, default_output: int = 256) -> int:
    """A cheap upper-ish estimate: ~4 characters per token, plus the output allowance."""
    if isinstance(request, EmbedRequest):
        return sum(len(t) for t in request.inputs) // 4 + 1
    chars = sum(len(m.text) for m in request.messages)
    return chars // 4 + 1 + (request.max_tokens or default_output)


class _Bucket:
    def __init__(self, per_minute: int, now: float) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.level = float(per_minute)
        self.stamp = now

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def shortfall(self, amount: float) -> float:
        """Seconds until ``amount`` is available (0 when it is)."""
        need = min(amount, self.capacity) - self.level
        return 0.0 if need <= 0 else need / self.rate


class RateLimiter(ModelWrapper):
    """A Model that spaces calls to ``inner`` under ``policy``'s RPM and TPM."""

    def __init__(
        self,
        inner: Model,
        policy: RateLimitPolicy | None = None,
        *,
        clock: Clock | None = None,
        events: EventHub | None = None,
        name: str | None = None,
        **limits: Any,
    ) -> None:
        super().__init__(inner, name=name)
        self.policy = policy or RateLimitPolicy(**limits)
        self.clock: Clock = clock or SystemClock()
        self.events = events or default_hub
        now = self.clock.now()
        self._rpm = _Bucket(self.policy.rpm, now) if self.policy.rpm else None
        self._tpm = _Bucket(self.policy.tpm, now) if self.policy.tpm else None
        self._lock = threading.Lock()

    def headroom(self) -> float | None:
        """Fraction (0..1) of the token bucket left, or None without a TPM limit."""
        if self._tpm is None:
            return None
        with self._lock:
            self._tpm.refill(self.clock.now())
            return max(0.0, self._tpm.level / self._tpm.capacity)

    def _try_take(self, tokens: int) -> tuple[float, str]:
        """Take capacity now, or return (seconds to wait, which limit) without taking."""
        with self._lock:
            now = self.clock.now()
            wait, which = 0.0, ""
            for bucket, label, amount in ((self._rpm, "rpm", 1.0), (self._tpm, "tpm", float(tokens))):
                if bucket is None:
                    continue
                bucket.refill(now)
                short = bucket.shortfall(amount)
                if short > wait:
                    wait, which = short, label
            if wait > 0:
                return wait, which
            if self._rpm is not None:
                self._rpm.level -= 1.0
            if self._tpm is not None:
                self._tpm.level -= tokens
            return 0.0, ""

    async def acquire(self, tokens: int) -> None:
        """Take one request and ``tokens`` tokens, waiting or raising ``RateLimited``."""
        waited = 0.0
        while True:
            wait, which = self._try_take(tokens)
            if wait <= 0:
                return
            if not self.policy.wait or waited + wait > self.policy.max_wait:
                raise RateLimited(
                    f"local {which} limit of {self.name!r} reached",
                    provider=LOCAL_PROVIDER,
                    model=self.name,
                    code=f"local_{which}_limit",
                    retry_after=wait,
                )
            if self.events.active:
                self.events.emit(RateLimitWaited(self.name, self.clock.now(), wait, which))
            await self.clock.sleep(wait)
            waited += wait

    def reconcile(self, estimated: int, actual: int) -> None:
        """Correct the token bucket once the real usage is known."""
        if self._tpm is None or actual <= 0:
            return
        with self._lock:
            self._tpm.level -= actual - estimated

    async def chat(self, request: ChatRequest) -> ChatResponse:
        estimate = estimate_tokens(request, self.policy.default_output_tokens)
        await self.acquire(estimate)
        response = await self.inner.chat(request)
        self.reconcile(estimate, response.usage.total_tokens)
        return response

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        estimate = estimate_tokens(request)
        await self.acquire(estimate)
        response = await self.inner.embed(request)
        self.reconcile(estimate, response.usage.total_tokens)
        return response

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        estimate = estimate_tokens(request, self.policy.default_output_tokens)
        await self.acquire(estimate)
        inner = self.inner.stream(request)
        try:
            for chunk in await open_stream(inner):
                if chunk.usage is not None:
                    self.reconcile(estimate, chunk.usage.total_tokens)
                yield chunk
            async for chunk in inner:
                if chunk.usage is not None:
                    self.reconcile(estimate, chunk.usage.total_tokens)
                yield chunk
        finally:
            await close_stream(inner)
