"""Prices per 1M tokens and the cost of a call.

The table ships as data (``data/pricing.json``, dated by its ``as_of`` field) and is
read once, lazily. A model is found by ``provider/model``, then ``model``, then the
longest listed prefix (so a dated snapshot such as ``gpt-4o-mini-2024-07-18`` gets
the price of ``gpt-4o-mini``). A price given in ``legato.yaml`` (``models.NAME.price``)
or to an adapter (``price=``) wins over the table.

An unknown model costs ``None`` and logs one warning per model and process: never
a silent 0 that would keep a budget from firing. Models of the ``local`` and
``python`` providers cost 0 (no money changes hands).
"""

from __future__ import annotations

import json
import logging
import threading
from functools import cache
from importlib import resources
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from legato.providers._types import Usage

__all__ = ["Price", "PricingTable", "cost_of", "default_pricing"]

log = logging.getLogger("legato.providers")


class Price(BaseModel):
    """USD per 1M tokens. ``cached_input`` and ``cache_write`` default to ``input``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: float = Field(ge=0)
    output: float = Field(default=0.0, ge=0)
    cached_input: float | None = Field(default=None, ge=0)
    cache_write: float | None = Field(default=None, ge=0)

    def cost(self, usage: Usage) -> float:
        cached = usage.cached_input_tokens
        written = usage.cache_write_tokens
        fresh = max(0, usage.input_tokens - cached - written)
        total = (
            fresh * self.input
            + cached * (self.input if self.cached_input is None else self.cached_input)
            + written * (self.input if self.cache_write is None else self.cache_write)
            + usage.output_tokens * self.output
        )
        return total / 1_000_000


FREE = Price(input=0.0, output=0.0)
_PRICED_AS = {"azure": "openai"}  # Azure OpenAI bills the OpenAI list prices


class PricingTable:
    """Model prices with prefix lookup. Immutable; :meth:`with_prices` makes a copy."""

    def __init__(
        self,
        prices: dict[str, Price],
        *,
        as_of: str | None = None,
        free_providers: frozenset[str] = frozenset({"local", "python"}),
    ) -> None:
        self.prices = dict(prices)
        self.as_of = as_of
        self.free_providers = free_providers
        self._by_length = sorted(self.prices, key=len, reverse=True)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PricingTable:
        prices = {key: Price.model_validate(value) for key, value in data.get("models", {}).items()}
        free = frozenset(data.get("free_providers", ("local", "python")))
        return cls(prices, as_of=data.get("as_of"), free_providers=free)

    def with_prices(self, prices: dict[str, Price]) -> PricingTable:
        return PricingTable({**self.prices, **prices}, as_of=self.as_of, free_providers=self.free_providers)

    def lookup(self, provider: str, model: str) -> Price | None:
        if provider in self.free_providers:
            return FREE
        provider = _PRICED_AS.get(provider, provider)
        for key in (f"{provider}/{model}", model):
            if key in self.prices:
                return self.prices[key]
        for key in self._by_length:
            bare = key.split("/", 1)[1] if key.startswith(f"{provider}/") else key
            if "/" in bare and not key.startswith(f"{provider}/"):
                continue  # another provider's entry
            if model.startswith(bare) and model[len(bare) : len(bare) + 1] in ("", "-", "@", ":"):
                return self.prices[key]
        return None


@cache
def default_pricing() -> PricingTable:
    """The table shipped with legato (read once)."""
    text = resources.files("legato.providers").joinpath("data/pricing.json").read_text(encoding="utf-8")
    return PricingTable.from_json(json.loads(text))


_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def cost_of(
    provider: str,
    model: str,
    usage: Usage,
    *,
    price: Price | None = None,
    table: PricingTable | None = None,
) -> float | None:
    """USD cost of ``usage``, or None (with one logged warning) for an unknown model."""
    found = price or (table or default_pricing()).lookup(provider, model)
    if found is None:
        with _warned_lock:
            first = (provider, model) not in _warned
            _warned.add((provider, model))
        if first:
            log.warning(
                "no price known for %s model %r: its calls are recorded with cost=None "
                "(set models.NAME.price in legato.yaml to price it)",
                provider,
                model,
            )
        return None
    return found.cost(usage)
