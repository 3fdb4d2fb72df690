"""``Selector``: choose a model per request from declarative rules.

Rules are tried in order; the first whose every condition holds sends the request
to its target, otherwise ``default`` answers. Conditions:

* ``max_input_tokens`` / ``min_input_tokens``: the estimated prompt size;
* ``needs``: capabilities the request needs (``vision``, ``tools``,
  ``json_schema``), derived from the request itself;
* ``tags``: any of ``metadata["tags"]`` (task tags such as ``code`` or ``legal``);
* ``max_budget_remaining``: ``metadata["budget_remaining"]`` (USD) is at most this,
  so a nearly spent budget goes to a cheaper model;
* ``max_latency_sla``: ``metadata["latency_sla"]`` (seconds) is at most this, so a
  tight deadline goes to a fast model.

A rule may also declare what its target can do (``capabilities``,
``context_window``); a request the target cannot serve skips the rule.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence, Set
from dataclasses import dataclass, field
from typing import Any

from legato.providers import ChatChunk, ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, Model
from legato.routing._deployment import CAPABILITIES, input_tokens, required_capabilities

__all__ = ["Rule", "Selector"]


def _number(metadata: dict[str, Any], key: str) -> float | None:
    value = metadata.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"request metadata {key!r} must be a number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Rule:
    """Send matching requests to ``target`` (see the module docstring)."""

    target: Model
    max_input_tokens: int | None = None
    min_input_tokens: int | None = None
    needs: Set[str] = field(default_factory=frozenset)
    tags: Set[str] = field(default_factory=frozenset)
    max_budget_remaining: float | None = None
    max_latency_sla: float | None = None
    capabilities: Set[str] | None = None
    context_window: int | None = None

    def __post_init__(self) -> None:
        for label, values in (("needs", self.needs), ("capabilities", self.capabilities or ())):
            unknown = set(values) - CAPABILITIES
            if unknown:
                raise ValueError(f"rule for {self.target.name!r}: unknown {label} {sorted(unknown)}")

    def matches(self, request: ChatRequest | EmbedRequest) -> bool:
        tokens = input_tokens(request)
        needed = required_capabilities(request)
        if self.max_input_tokens is not None and tokens > self.max_input_tokens:
            return False
        if self.min_input_tokens is not None and tokens < self.min_input_tokens:
            return False
        if self.context_window is not None and tokens > self.context_window:
            return False
        if not set(self.needs) <= needed:
            return False
        if self.capabilities is not None and not needed <= set(self.capabilities):
            return False
        if self.tags:
            tags = request.metadata.get("tags") or ()
            if isinstance(tags, str):
                tags = (tags,)
            if not set(self.tags) & set(tags):
                return False
        if self.max_budget_remaining is not None:
            remaining = _number(request.metadata, "budget_remaining")
            if remaining is None or remaining > self.max_budget_remaining:
                return False
        if self.max_latency_sla is not None:
            sla = _number(request.metadata, "latency_sla")
            if sla is None or sla > self.max_latency_sla:
                return False
        return True


class Selector:
    """A Model that sends each request to the first matching rule's target, else ``default``."""

    def __init__(self, name: str, rules: Sequence[Rule], default: Model) -> None:
        self.name = name
        self.rules = list(rules)
        self.default = default

    def select(self, request: ChatRequest | EmbedRequest) -> Model:
        for rule in self.rules:
            if rule.matches(request):
                return rule.target
        return self.default

    async def chat(self, request: ChatRequest) -> ChatResponse:
        return await self.select(request).chat(request)

    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        return self.select(request).stream(request)

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        return await self.select(request).embed(request)

    async def aclose(self) -> None:
        return None  # the targets are owned by whoever built them

    def __repr__(self) -> str:
        return f"Selector({self.name!r}, rules={len(self.rules)}, default={self.default.name!r})"
