"""``Cascade``: ask a cheap model first, escalate only when its answer is not good enough.

Each tier answers in turn until the scorer accepts an answer; the last tier's
answer is returned whatever the scorer says. A tier that fails with a model error
escalates too (a small model's context window, an outage). The response's
``tier`` names the tier that answered; :class:`CascadeAnswered` events and
``Cascade.stats`` record how often each tier answered and the USD saved against
sending everything to the top tier: the top tier's price for the usage of the
answer, minus what every tier tried cost (a tier's declared price, else the cost
its response reported). Unknown prices make the saving unknown (``None``). A known
saving is also credited to the current run's ledger (``saved``).

Scorers are one function ``(request, response) -> bool`` (sync or async):
:func:`json_valid`, :func:`confidence_at_least`, or your own.

Streams: a scorer needs the whole answer, so ``stream`` runs the cascade and
yields the accepted answer as one chunk followed by the final chunk.
"""

from __future__ import annotations

import inspect
import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from legato.errors import ModelError
from legato.ledger import current_ledger
from legato.providers import ChatChunk, ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, Model, Usage
from legato.resilience import CascadeAnswered, Clock, EventHub, SystemClock, default_hub

__all__ = ["Cascade", "Scorer", "Tier", "confidence_at_least", "json_valid"]

Scorer = Callable[[ChatRequest, ChatResponse], bool | Awaitable[bool]]


def json_valid(request: ChatRequest, response: ChatResponse) -> bool:
    """Accept an answer whose text parses as JSON (code fences allowed)."""
    return _parse_json(response.text) is not None


def confidence_at_least(threshold: float, field: str = "confidence") -> Scorer:
    """Accept a JSON answer whose ``field`` is a number >= ``threshold``."""

    def scorer(request: ChatRequest, response: ChatResponse) -> bool:
        data = _parse_json(response.text)
        if not isinstance(data, dict):
            return False
        value = data.get(field)
        return isinstance(value, int | float) and not isinstance(value, bool) and value >= threshold

    scorer.__name__ = f"confidence_at_least_{threshold:g}"
    return scorer


def _parse_json(text: str) -> Any:
    body = text.strip()
    if body.startswith("```"):
        body = body.strip("`")
        body = body.split("\n", 1)[1] if "\n" in body else ""
    try:
        return json.loads(body)
    except ValueError:
        return None


@dataclass(frozen=True)
class Tier:
    """One step of a cascade. Prices (USD per million tokens) let the cascade report savings."""

    model: Model
    name: str | None = None
    input_cost_per_mtok: float | None = None
    output_cost_per_mtok: float | None = None

    @property
    def label(self) -> str:
        return self.name or self.model.name

    def price(self, usage: Usage) -> float | None:
        if self.input_cost_per_mtok is None:
            return None
        return (
            usage.input_tokens * self.input_cost_per_mtok + usage.output_tokens * (self.output_cost_per_mtok or 0.0)
        ) / 1e6


class Cascade:
    """A Model over ``tiers``, cheapest first (see the module docstring)."""

    def __init__(
        self,
        name: str,
        tiers: Sequence[Tier | Model],
        scorer: Scorer = json_valid,
        *,
        clock: Clock | None = None,
        events: EventHub | None = None,
    ) -> None:
        if len(tiers) < 2:
            raise ValueError(f"cascade {name!r} needs at least two tiers")
        self.name = name
        self.tiers = [t if isinstance(t, Tier) else Tier(t) for t in tiers]
        self.scorer = scorer
        self.clock: Clock = clock or SystemClock()
        self.events = events or default_hub
        self._lock = threading.Lock()
        self.answered: dict[str, int] = {t.label: 0 for t in self.tiers}
        self.saved = 0.0

    @property
    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"answered": dict(self.answered), "saved": self.saved}

    async def _accepts(self, request: ChatRequest, response: ChatResponse) -> bool:
        verdict = self.scorer(request, response)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        return bool(verdict)

    async def chat(self, request: ChatRequest) -> ChatResponse:
        spent: float | None = 0.0
        last_error: ModelError | None = None
        for index, tier in enumerate(self.tiers):
            final = index == len(self.tiers) - 1
            try:
                response = await tier.model.chat(request)
            except ModelError as error:
                if final:
                    raise
                last_error = error
                continue
            cost = tier.price(response.usage)
            if cost is None:
                cost = response.cost
            spent = None if spent is None or cost is None else spent + cost
            if not final and not await self._accepts(request, response):
                continue
            return self._record(response, tier, index, spent)
        raise last_error or RuntimeError("unreachable")  # pragma: no cover - the final tier returns or raises

    def _record(self, response: ChatResponse, tier: Tier, index: int, spent: float | None) -> ChatResponse:
        top = self.tiers[-1].price(response.usage)
        saved = None if top is None or spent is None else top - spent
        with self._lock:
            self.answered[tier.label] += 1
            if saved is not None:
                self.saved += saved
        ledger = current_ledger()
        if ledger is not None and saved:
            ledger.record_saving(saved)
        if self.events.active:
            self.events.emit(CascadeAnswered(self.name, self.clock.now(), tier.label, index, saved))
        return response.model_copy(update={"tier": f"{self.name}/{tier.label}"})

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        response = await self.chat(request)
        yield ChatChunk(
            text=response.text,
            tool_calls=None,
            model=response.model,
            provider=response.provider,
            id=response.id,
        )
        yield ChatChunk(
            finish_reason=response.finish_reason or "stop",
            usage=response.usage,
            cost=response.cost,
            model=response.model,
            provider=response.provider,
            id=response.id,
        )

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        return await self.tiers[-1].model.embed(request)

    async def aclose(self) -> None:
        return None  # the tiers are owned by whoever built them

    def __repr__(self) -> str:
        return f"Cascade({self.name!r}, {[t.label for t in self.tiers]})"
