"""Local tasks behind the :class:`~legato.providers.Model` protocol.

So that a routed model group can put a local model next to OpenAI and Anthropic:

- :class:`LocalEmbedModel`: ``embed`` with the shared all-MiniLM-L6-v2 task, so a
  pipeline's ``task: embed`` steps and a model group use one copy of the weights
  and their calls are micro-batched together.
- :class:`LocalChatModel`: the local Llama-class chat model (SmolLM2-135M-Instruct,
  run in-process by :class:`legato.providers.LocalModel`), with its answers
  checked by :func:`check_generation`: a 135M-parameter model loops or answers
  nothing often enough that a degenerate answer must raise ``MalformedResponse``,
  so a group falls back to its next member instead of passing it on.
- :func:`summarize_messages`: a chat function whose answer is an extractive
  TextRank summary of the last user message, for ``provider: python`` in
  ``legato.yaml``. It is the last resort of a summarisation group: no key, no
  network, no generation. Put the instruction in the system message and only the
  document in the user message: the user message is summarised as it is.
"""

from __future__ import annotations

import time
from typing import Any

from legato._shared import Shared
from legato.errors import BadRequest, MalformedResponse
from legato.ledger import CallRecord, current_ledger
from legato.providers import ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, Model, ModelWrapper, Usage
from legato.tasks._embed import EmbedTask
from legato.tasks._summarize import SummarizeTask

__all__ = ["LocalChatModel", "LocalEmbedModel", "check_generation", "summarize_messages"]

PROVIDER = "local"
SMOLLM2 = "SmolLM2-135M-Instruct"


class LocalEmbedModel:
    """all-MiniLM-L6-v2 as a Model (``embed`` only; ``chat`` raises ``BadRequest``)."""

    def __init__(self, task: EmbedTask | None = None, *, name: str = "local/all-MiniLM-L6-v2") -> None:
        self.name = name
        self._task = task

    def __repr__(self) -> str:
        return f"LocalEmbedModel(name={self.name!r})"

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
        ledger = current_ledger()
        if ledger is not None:
            ledger.record(CallRecord(model=self.name, provider=PROVIDER, input_tokens=usage.input_tokens, cost=0.0))
        return EmbedResponse(
            vectors=vectors,
            model=self.name,
            provider=PROVIDER,
            usage=usage,
            cost=0.0,
            latency_s=time.perf_counter() - started,
        )

    async def chat(self, request: ChatRequest) -> ChatResponse:
        raise BadRequest(f"{self.name} is an embedding model: it cannot chat", provider=PROVIDER, model=self.name)

    def stream(self, request: ChatRequest) -> Any:
        raise BadRequest(f"{self.name} is an embedding model: it cannot chat", provider=PROVIDER, model=self.name)

    async def aclose(self) -> None:
        """Nothing to release: the weights stay shared in the task registry."""


_chat_models: Shared[str, Model] = Shared("the local tasks' chat model")


def _shared_smollm2() -> Model:
    """One in-process SmolLM2 per process, however many LocalChatModels wrap it."""
    from legato.providers import LocalModel

    return _chat_models.get(SMOLLM2, lambda: LocalModel(SMOLLM2, name=f"local/{SMOLLM2.lower()}", kind="chat"))


class LocalChatModel(ModelWrapper):
    """A local chat model whose answers are checked (default: SmolLM2-135M-Instruct).

    ``chat`` raises :class:`~legato.errors.MalformedResponse` (not retryable) when
    :func:`check_generation` finds the answer unusable. ``stream`` passes chunks
    through unchecked: they reach the caller before the answer is complete.
    """

    def __init__(self, inner: Model | None = None, *, name: str | None = None, min_chars: int = 1) -> None:
        super().__init__(inner if inner is not None else _shared_smollm2(), name=name)
        self.min_chars = min_chars

    async def warm_up(self) -> None:
        warm = getattr(self.inner, "warm_up", None)
        if warm is not None:
            await warm()

    async def chat(self, request: ChatRequest) -> ChatResponse:
        if request.tools:
            raise BadRequest(f"{self.name} does not support tools", provider=PROVIDER, model=self.name)
        response = await self.inner.chat(request)
        problem = check_generation(response.text, min_chars=self.min_chars)
        if problem is not None:
            raise MalformedResponse(f"{self.name}: {problem}", provider=PROVIDER, model=self.name, retryable=False)
        return response

    async def aclose(self) -> None:
        """Keeps the shared weights loaded for the other users of the process."""


def check_generation(text: str, *, min_chars: int = 1) -> str | None:
    """Why a small model's output is unusable (``None`` when it looks fine).

    Catches the failure modes of tiny models: an empty answer and the loop that
    repeats the same few words until the token limit.
    """
    stripped = text.strip()
    if len(stripped) < min_chars:
        return "the model returned no text"
    words = stripped.lower().split()
    if len(words) >= 24:
        grams = [" ".join(words[i : i + 4]) for i in range(len(words) - 3)]
        distinct = len(set(grams)) / len(grams)
        if distinct < 0.5:
            return f"the model repeated itself ({distinct:.0%} distinct 4-grams)"
    return None


def summarize_messages(request: ChatRequest, *, max_sentences: int = 3) -> str:
    """An extractive summary of the request's last user message (blocking).

    For ``provider: python`` (``model: legato.tasks:summarize_messages``), which
    runs it in a worker thread and records the call at a price of 0.
    """
    from legato.tasks import get

    text = next((m.text for m in reversed(request.messages) if m.role == "user" and m.text.strip()), "")
    if not text:
        raise BadRequest("summarize_messages: the request has no user text to summarise", provider="python")
    task = get("summarize", max_sentences=max_sentences)
    assert isinstance(task, SummarizeTask)
    return task.run_sync([text])[0].text
