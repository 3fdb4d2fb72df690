"""Pre-call cost estimates from the pricing table and offline token estimates.

An estimate is what a call *can* cost: the estimated input tokens (a character
heuristic, a little pessimistic, no tokenizer download) plus ``max_tokens`` of
output when the request sets it, else ``default_output_tokens``. With
``max_tokens`` set the estimate is an upper bound for the output side, which is
what lets a budget hold.

The price of a model comes from, in order: a ``price`` attribute on the model or
any model it wraps (adapters take ``price=``, and ``legato.yaml`` sets it per
model), then the pricing table, looked up by provider and model id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeGuard

from legato.providers import ChatRequest, EmbedRequest, Model, Price, PricingTable, default_pricing, estimate_tokens

__all__ = ["CostEstimate", "CostEstimator", "describe_model"]


@dataclass(frozen=True, slots=True)
class CostEstimate:
    """What one call is expected to cost. ``usd`` is ``None`` when the price is unknown."""

    model: str
    provider: str
    input_tokens: int
    output_tokens: int
    usd: float | None

    def __mul__(self, times: int) -> CostEstimate:
        return CostEstimate(
            self.model,
            self.provider,
            self.input_tokens * times,
            self.output_tokens * times,
            None if self.usd is None else self.usd * times,
        )


def describe_model(model: Model | str, request_model: str | None = None) -> tuple[str, str, Price | None]:
    """``(provider, model id, own price)`` of a model object or a ``provider/model`` string.

    Wrappers are looked through (``.inner``) to the adapter that knows its provider.
    """
    if isinstance(model, str):
        prefix, _, bare = model.rpartition("/")
        return prefix, request_model or bare, None
    node: object = model
    provider: str | None = None
    model_id: str | None = None
    price: Price | None = None
    for _ in range(32):  # a chain of wrappers, never a cycle
        provider = provider or _str_attr(node, "provider")
        model_id = model_id or _str_attr(node, "model")
        own = getattr(node, "price", None)
        price = price or (own if isinstance(own, Price) else None)
        inner = getattr(node, "inner", None)
        if inner is None:
            break
        node = inner
    name = request_model or model_id or model.name
    if not provider and "/" in name:
        provider, _, name = name.partition("/")
    return provider or "", name, price


def _str_attr(obj: object, attr: str) -> str | None:
    value = getattr(obj, attr, None)
    return value if isinstance(value, str) and value else None


class CostEstimator:
    """Estimate the cost of calls before making them.

    Args:
        pricing: the pricing table (the one shipped with legato by default).
        default_output_tokens: output assumed for a request without ``max_tokens``.
    """

    def __init__(self, pricing: PricingTable | None = None, *, default_output_tokens: int = 256) -> None:
        if default_output_tokens < 0:
            raise ValueError(f"default_output_tokens must be >= 0, got {default_output_tokens}")
        self._pricing = pricing
        self.default_output_tokens = default_output_tokens
        self._plans: dict[int, tuple[object, _Node | None]] = {}  # worst-case plans, by model object

    @property
    def pricing(self) -> PricingTable:
        if self._pricing is None:
            self._pricing = default_pricing()
        return self._pricing

    def price(self, provider: str, model: str, own: Price | None = None) -> Price | None:
        return own or self.pricing.lookup(provider, model)

    def chat(self, request: ChatRequest, model: Model | str) -> CostEstimate:
        """The estimated cost of ``request`` sent to ``model`` (a Model or ``provider/model``)."""
        provider, name, own = describe_model(model, request.model)
        input_tokens = estimate_tokens(request, provider or None)
        output_tokens = request.max_tokens or self.default_output_tokens
        return self._priced(provider, name, own, input_tokens, output_tokens)

    def embed(self, request: EmbedRequest, model: Model | str) -> CostEstimate:
        provider, name, own = describe_model(model, request.model)
        return self._priced(provider, name, own, estimate_tokens(request, provider or None), 0)

    def tokens(
        self, model: Model | str, input_tokens: int, output_tokens: int, *, request_model: str | None = None
    ) -> CostEstimate:
        """The cost of a given number of tokens (for plans that estimate tokens themselves)."""
        provider, name, own = describe_model(model, request_model)
        return self._priced(provider, name, own, input_tokens, output_tokens)

    def worst_case(self, request: ChatRequest | EmbedRequest, model: Model) -> float | None:
        """The most ``request`` can cost in USD on ``model`` (a model or a group; see the
        module docstring); None when no model it may reach has a known price.

        What ``model`` may reach and at what prices is read once per model object and
        kept (a gateway asks this for every call, and walking a group's wrappers,
        deployments and fallbacks cost more than the arithmetic); a model whose
        reachable models or prices change must be passed as a new object."""
        plan = self._plans.get(id(model))
        if plan is None or plan[0] is not model:
            if len(self._plans) >= _MAX_PLANS:
                self._plans.clear()
            plan = self._plans[id(model)] = (model, self._plan(model, 0))
        if plan[1] is None:
            return None
        output = 0 if isinstance(request, EmbedRequest) else request.max_tokens or self.default_output_tokens
        return plan[1].usd(_Tokens(request, output))

    def _plan(self, node: object, depth: int) -> _Node | None:
        """What ``node`` may cost, as a tree of leaves (a price and the provider whose
        token estimate applies), sums (a cascade's tiers) and maxima (alternatives)."""
        if depth > 32:  # a chain of wrappers, never a cycle
            return None
        tiers = getattr(node, "tiers", None)
        if isinstance(tiers, list):
            return _Combined.of(sum, [self._plan(t, depth + 1) for t in tiers])
        if not _is_model(node):  # a deployment or a tier: its own listed price, else its model's
            inner = getattr(node, "model", None)
            listed = getattr(node, "input_cost_per_mtok", None)
            if listed is None or not _is_model(inner):
                return self._plan(inner, depth + 1) if inner is not None else None
            output_price = float(getattr(node, "output_cost_per_mtok", None) or 0.0)
            return _Leaf(describe_model(inner)[0], Price(input=float(listed), output=output_price))
        children = list(_reachable(node))
        if children:
            return _Combined.of(max, [self._plan(c, depth + 1) for c in children])
        provider, name, own = describe_model(node)
        price = self.price(provider, name, own)
        return _Leaf(provider, price) if price is not None else None

    def _priced(
        self, provider: str, name: str, own: Price | None, input_tokens: int, output_tokens: int
    ) -> CostEstimate:
        price = self.price(provider, name, own)
        usd = None
        if price is not None:
            usd = (input_tokens * price.input + output_tokens * price.output) / 1_000_000
        return CostEstimate(name, provider, input_tokens, output_tokens, usd)


_MAX_PLANS = 1024  # worst-case plans kept; the cache starts again when full


class _Tokens:
    """One request's token counts: input estimated once per provider's tokenizer."""

    __slots__ = ("_input", "output", "request")

    def __init__(self, request: ChatRequest | EmbedRequest, output: int) -> None:
        self.request = request
        self.output = output
        self._input: dict[str, int] = {}

    def input(self, provider: str) -> int:
        found = self._input.get(provider)
        if found is None:
            found = self._input[provider] = estimate_tokens(self.request, provider or None)
        return found


@dataclass(frozen=True, slots=True)
class _Leaf:
    provider: str
    price: Price

    def usd(self, tokens: _Tokens) -> float:
        return (tokens.input(self.provider) * self.price.input + tokens.output * self.price.output) / 1_000_000


@dataclass(frozen=True, slots=True)
class _Combined:
    combine: Callable[[list[float]], float]
    parts: tuple[_Node, ...]

    @staticmethod
    def of(combine: Callable[[list[float]], float], parts: list[_Node | None]) -> _Node | None:
        known = tuple(p for p in parts if p is not None)
        if not known:
            return None
        return known[0] if len(known) == 1 else _Combined(combine, known)

    def usd(self, tokens: _Tokens) -> float:
        return self.combine([p.usd(tokens) for p in self.parts])


_Node = _Leaf | _Combined

_MODEL_TYPES: dict[type, bool] = {}


def _is_model(value: object) -> TypeGuard[Model]:
    """``isinstance(value, Model)``, decided once per class: a runtime protocol check walks
    every member of the protocol, and one worst case asks it for every node it visits."""
    kind = type(value)
    known = _MODEL_TYPES.get(kind)
    if known is None:
        known = _MODEL_TYPES[kind] = isinstance(value, Model)
    return known


def _reachable(node: object) -> Iterator[object]:
    """The models a wrapper, router or selector may send a request to."""
    for attr in ("inner", "downgrade", "default"):
        child = getattr(node, attr, None)
        if _is_model(child):
            yield child
    for state in getattr(node, "deployments", None) or ():
        yield getattr(state, "deployment", state)
    for rule in getattr(node, "rules", None) or ():
        target = getattr(rule, "target", None)
        if _is_model(target):
            yield target
    fallbacks = getattr(node, "fallbacks", None)
    if fallbacks is not None:
        for attr in ("on_failure", "context_window", "content_filtered"):
            yield from getattr(fallbacks, attr, None) or ()
        degrade = getattr(fallbacks, "degrade", None)
        if _is_model(degrade):
            yield degrade
