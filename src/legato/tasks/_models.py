"""Local tasks behind the :class:`~legato.providers.Model` protocol.

So that a routed model group can put a local model next to OpenAI and Anthropic:

- :class:`LocalEmbedModel`: ``embed`` with all-MiniLM-L6-v2.
- :class:`LocalChatModel`: ``chat`` with SmolLM2-135M-Instruct; the answer is
  checked (:func:`check_generation`) and a degenerate one raises
  ``MalformedResponse`` so a group falls back to its next member.
- :class:`ExtractiveSummaryModel`: ``chat`` that answers with a TextRank summary of
  the last user message. It is the last resort of a summarisation group: it never
  needs a key or a network, and its responses say ``degraded=True``.

Every call is recorded on the current usage ledger at a known price of 0 USD, and
an operation a model cannot do raises ``BadRequest``. Put the instruction in the
system message and only the document in the user message: the extractive model
summarises the last user message as it is. ``stream`` yields the whole
answer as one chunk followed by the final chunk: local generation here is not
incremental.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

from legato.errors import BadRequest, MalformedResponse
from legato.ledger import CallRecord, current_ledger
from legato.providers import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbedRequest,
    EmbedResponse,
    Message,
    Usage,
)
from legato.tasks._embed import EmbedTask
from legato.tasks._generate import GenerateInput, GenerateTask, check_generation
from legato.tasks._summarize import SummarizeTask

__all__ = ["ExtractiveSummaryModel", "LocalChatModel", "LocalEmbedModel"]

PROVIDER = "local"


def _record(model: str, usage: Usage) -> None:
    ledger = current_ledger()
    if ledger is not None:
        ledger.record(
            CallRecord(
                model=model,
                provider=PROVIDER,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cost=0.0,
            )
        )


class _LocalModel:
    """Shared plumbing: unsupported operations and a one-chunk stream."""

    name: str

    async def chat(self, request: ChatRequest) -> ChatResponse:
        raise BadRequest(f"{self.name} cannot chat", provider=PROVIDER, model=self.name)

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        response = await self.chat(request)
        yield ChatChunk(text=response.text, model=response.model, provider=PROVIDER, id=response.id)
        yield ChatChunk(
            finish_reason=response.finish_reason,
            usage=response.usage,
            cost=response.cost,
            model=response.model,
            provider=PROVIDER,
            id=response.id,
        )

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        raise BadRequest(f"{self.name} cannot embed", provider=PROVIDER, model=self.name)

    async def warm_up(self) -> None:
        """Load the weights now rather than on the first call."""

    async def aclose(self) -> None:
        """Nothing to release: the weights stay shared in the task registry."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class LocalEmbedModel(_LocalModel):
    """all-MiniLM-L6-v2 as a Model (``embed`` only)."""

    def __init__(self, task: EmbedTask | None = None, *, name: str = "local/all-MiniLM-L6-v2") -> None:
        self.name = name
        self._task = task

    @property
    def task(self) -> EmbedTask:
        if self._task is None:
            from legato.tasks import get

            task = get("embed")
            assert isinstance(task, EmbedTask)
            self._task = task
        return self._task

    async def warm_up(self) -> None:
        await self.task.awarm_up()

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        if request.dimensions is not None and request.dimensions != EmbedTask.dimensions:
            raise BadRequest(
                f"{self.name} produces {EmbedTask.dimensions}-dimensional vectors, not {request.dimensions}",
                provider=PROVIDER,
                model=self.name,
            )
        started = time.perf_counter()
        vectors = await self.task.run_batch(request.inputs)
        usage = Usage(input_tokens=sum(len(text.split()) for text in request.inputs))
        _record(self.name, usage)
        return EmbedResponse(
            vectors=vectors,
            model=self.name,
            provider=PROVIDER,
            usage=usage,
            cost=0.0,
            latency_s=time.perf_counter() - started,
        )


class LocalChatModel(_LocalModel):
    """SmolLM2-135M-Instruct as a Model (``chat`` and ``stream``)."""

    def __init__(
        self, task: GenerateTask | None = None, *, name: str = "local/smollm2-135m-instruct", max_tokens: int = 128
    ) -> None:
        self.name = name
        self.max_tokens = max_tokens
        self._task = task

    @property
    def task(self) -> GenerateTask:
        if self._task is None:
            from legato.tasks import get

            task = get("generate")
            assert isinstance(task, GenerateTask)
            self._task = task
        return self._task

    async def warm_up(self) -> None:
        await self.task.awarm_up()

    async def chat(self, request: ChatRequest) -> ChatResponse:
        if request.tools:
            raise BadRequest(f"{self.name} does not support tools", provider=PROVIDER, model=self.name)
        started = time.perf_counter()
        item = GenerateInput(
            messages=[{"role": m.role, "content": m.text} for m in request.messages if m.role != "tool"],
            max_tokens=min(request.max_tokens or self.max_tokens, 1024),
            temperature=request.temperature or 0.0,
            seed=request.seed,
        )
        generation = await self.task(item)
        usage = Usage(input_tokens=generation.input_tokens, output_tokens=generation.output_tokens)
        _record(self.name, usage)
        problem = check_generation(generation.text)
        if problem is not None:
            raise MalformedResponse(f"{self.name}: {problem}", provider=PROVIDER, model=self.name, retryable=False)
        return ChatResponse(
            message=Message(role="assistant", content=generation.text),
            model=self.name,
            provider=PROVIDER,
            id=f"local-{uuid.uuid4().hex[:16]}",
            finish_reason=generation.finish_reason,
            usage=usage,
            cost=0.0,
            latency_s=time.perf_counter() - started,
            tier="local",
        )


class ExtractiveSummaryModel(_LocalModel):
    """A chat model whose answer is an extractive summary of the last user message."""

    def __init__(
        self, task: SummarizeTask | None = None, *, name: str = "local/extractive-summary", max_sentences: int = 3
    ) -> None:
        self.name = name
        self.max_sentences = max_sentences
        self._task = task

    @property
    def task(self) -> SummarizeTask:
        if self._task is None:
            from legato.tasks import get

            task = get("summarize", max_sentences=self.max_sentences)
            assert isinstance(task, SummarizeTask)
            self._task = task
        return self._task

    async def warm_up(self) -> None:
        await self.task.awarm_up()

    async def chat(self, request: ChatRequest) -> ChatResponse:
        text = next((m.text for m in reversed(request.messages) if m.role == "user" and m.text.strip()), "")
        if not text:
            raise BadRequest(f"{self.name}: the request has no user text to summarise", provider=PROVIDER)
        started = time.perf_counter()
        summary = await self.task(text)
        usage = Usage(input_tokens=len(text.split()), output_tokens=len(summary.text.split()))
        _record(self.name, usage)
        return ChatResponse(
            message=Message(role="assistant", content=summary.text),
            model=self.name,
            provider=PROVIDER,
            id=f"local-{uuid.uuid4().hex[:16]}",
            finish_reason="stop",
            usage=usage,
            cost=0.0,
            latency_s=time.perf_counter() - started,
            degraded=True,
            tier="local-extractive",
        )
