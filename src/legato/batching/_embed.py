"""Micro-batched embeddings: concurrent ``embed`` calls become one upstream call.

:class:`BatchedEmbeddings` wraps any ``Model`` (an OpenAI-compatible embeddings
endpoint, Hugging Face feature-extraction, a local model) and merges the inputs of
concurrent ``embed`` requests that ask for the same model and dimensions into one
request, then hands each caller its own vectors.

Cost stays exact per caller: the upstream call is made under a private usage ledger
and each caller records its share (prorated by input characters) on its own ledger,
so a step's cost is the cost of its own texts whichever caller's task happened to
send the batch. Requests with ``metadata["batch"] = False`` pass straight through.
"""

from __future__ import annotations

import weakref
from typing import Any

import anyio.lowlevel

from legato.batching._batcher import Batcher
from legato.errors import MalformedResponse
from legato.ledger import CallRecord, Ledger, current_ledger, use_ledger
from legato.providers import EmbedRequest, EmbedResponse, Model, ModelWrapper, Usage

__all__ = ["BatchedEmbeddings"]

_Key = tuple[str | None, int | None]


class BatchedEmbeddings(ModelWrapper):
    """Merge concurrent ``embed`` calls to ``inner`` (``chat`` and ``stream`` pass through).

    Args:
        inner: the embedding model.
        max_batch: most requests merged into one upstream call.
        max_inputs: most texts in one upstream call (providers cap it; OpenAI at 2048).
        max_wait_ms: longest a request waits for company.
    """

    def __init__(
        self,
        inner: Model,
        *,
        max_batch: int = 64,
        max_inputs: int = 2048,
        max_wait_ms: float = 5.0,
        name: str | None = None,
    ) -> None:
        super().__init__(inner, name=name)
        if max_inputs < 1:
            raise ValueError(f"max_inputs must be >= 1, got {max_inputs}")
        self.max_batch = max_batch
        self.max_inputs = max_inputs
        self.max_wait_ms = max_wait_ms
        # One batcher per event loop and per (model, dimensions): anyio primitives
        # belong to one loop, and only compatible requests can be merged.
        self._batchers: weakref.WeakKeyDictionary[Any, dict[_Key, Batcher[EmbedRequest, Any]]] = (
            weakref.WeakKeyDictionary()
        )
        self.upstream_calls = 0

    def __repr__(self) -> str:
        return f"BatchedEmbeddings({self.inner!r}, max_batch={self.max_batch})"

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        if request.metadata.get("batch") is False or len(request.inputs) >= self.max_inputs:
            return await self.inner.embed(request)
        response, record = await self._batcher(request)(request)
        ledger = current_ledger()
        if ledger is not None and record is not None:
            ledger.record(record)
        return response  # type: ignore[no-any-return]

    def _batcher(self, request: EmbedRequest) -> Batcher[EmbedRequest, Any]:
        loop = anyio.lowlevel.current_token().native_token
        per_loop = self._batchers.setdefault(loop, {})
        key: _Key = (request.model, request.dimensions)
        batcher = per_loop.get(key)
        if batcher is None:
            batcher = per_loop[key] = Batcher(
                self._run, max_batch=self.max_batch, max_wait_ms=self.max_wait_ms, name=f"embed:{self.name}"
            )
        return batcher

    async def _run(self, requests: list[EmbedRequest]) -> list[Any]:
        """Send the batch in as few upstream calls as ``max_inputs`` allows."""
        out: list[Any] = []
        group: list[EmbedRequest] = []
        for request in requests:
            if group and sum(len(r.inputs) for r in group) + len(request.inputs) > self.max_inputs:
                out.extend(await self._send(group))
                group = []
            group.append(request)
        if group:
            out.extend(await self._send(group))
        return out

    async def _send(self, group: list[EmbedRequest]) -> list[Any]:
        first = group[0]
        merged = EmbedRequest(
            inputs=[text for r in group for text in r.inputs], model=first.model, dimensions=first.dimensions
        )
        spend = Ledger("embed-batch")
        self.upstream_calls += 1
        with use_ledger(spend):
            try:
                response = await self.inner.embed(merged)
            except Exception as exc:
                return [exc] * len(group)
        if len(response.vectors) != len(merged.inputs):
            error = MalformedResponse(
                f"{self.inner.name!r} returned {len(response.vectors)} vectors for {len(merged.inputs)} inputs",
                provider=response.provider,
            )
            return [error] * len(group)
        return _split(group, response, spend)


def _split(group: list[EmbedRequest], response: EmbedResponse, spend: Ledger) -> list[Any]:
    total_chars = sum(len(t) for r in group for t in r.inputs) or 1
    cost = spend.cost if spend.calls and not spend.unpriced_calls else response.cost
    tokens = spend.input_tokens if spend.calls else response.usage.input_tokens
    results: list[Any] = []
    start = 0
    for request in group:
        end = start + len(request.inputs)
        share = sum(len(t) for t in request.inputs) / total_chars
        usage = Usage(input_tokens=round(tokens * share))
        part_cost = None if cost is None else cost * share
        part = response.model_copy(update={"vectors": response.vectors[start:end], "usage": usage, "cost": part_cost})
        record = CallRecord(part.model, part.provider, input_tokens=usage.input_tokens, cost=part_cost)
        results.append((part, record if spend.calls else None))
        start = end
    return results
