"""``PIIGuard``: a Model wrapper that keeps personal data from reaching a model.

Modes (:class:`PIIMode`):

- ``mask``: every detected entity in the request is replaced by a placeholder
  (``<PERSON_1>``, ``<EMAIL_ADDRESS_1>``; one placeholder per distinct value), the
  model answers with the placeholders, and the answer handed back has the original
  values restored. The provider never sees them; the caller reads them as usual.
- ``redact``: entities become ``<PERSON>`` in the request (and in the answer, with
  ``on: both``), and nothing is restored.
- ``block``: a request (or answer) with personal data raises :class:`GuardrailBlocked`
  naming the entity types found, never the values; the gateway answers 400.

Detection is Presidio's recognisers (:mod:`legato.guardrails._presidio`), limited to
``entities`` when given, ignoring the ``allow`` list of values; ``engine="patterns"``
uses pattern and checksum recognisers only (about 1-3 ms per KB), ``engine="ner"``
adds spaCy's named-entity recogniser for names and places (about 20 ms per KB). It
runs in a worker thread so the event loop keeps serving.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from enum import StrEnum
from typing import Any, Literal

import anyio

from legato.errors import ConfigError, GuardrailBlocked
from legato.guardrails._presidio import NER_ENTITIES, DetectionEngine, Finding, detector
from legato.providers import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Message,
    Model,
    ModelWrapper,
    TextPart,
    closing_stream,
)

__all__ = ["PIIGuard", "PIIMode"]


class PIIMode(StrEnum):
    MASK = "mask"
    REDACT = "redact"
    BLOCK = "block"


Direction = Literal["request", "response", "both"]
_PLACEHOLDER = re.compile(r"<[A-Z_]+_\d+>")


class _Masks:
    """Placeholders of one call: value -> placeholder, and back."""

    def __init__(self) -> None:
        self.by_value: dict[tuple[str, str], str] = {}
        self.by_placeholder: dict[str, str] = {}
        self._counts: dict[str, int] = {}

    def placeholder(self, entity: str, value: str) -> str:
        key = (entity, value)
        if key not in self.by_value:
            self._counts[entity] = self._counts.get(entity, 0) + 1
            token = f"<{entity}_{self._counts[entity]}>"
            self.by_value[key] = token
            self.by_placeholder[token] = value
        return self.by_value[key]

    def restore(self, text: str) -> str:
        return _PLACEHOLDER.sub(lambda m: self.by_placeholder.get(m.group(0), m.group(0)), text)


def _texts(message: Message) -> list[str]:
    """The texts of a message, in the order :meth:`PIIGuard._guard_request` rewrites them."""
    if isinstance(message.content, str):
        return [message.content]
    return [p.text for p in message.content or () if isinstance(p, TextPart)]


class PIIGuard(ModelWrapper):
    """Detect personal data in requests (and answers) and mask, redact or block it."""

    def __init__(
        self,
        inner: Model,
        *,
        mode: PIIMode | str = PIIMode.MASK,
        on: Direction = "request",
        entities: Sequence[str] | None = None,
        allow: Sequence[str] = (),
        threshold: float = 0.5,
        engine: DetectionEngine | str = DetectionEngine.NER,
        name: str | None = None,
    ) -> None:
        super().__init__(inner, name=name)
        self.mode = PIIMode(mode)
        self.on = on
        self.entities = list(entities) if entities else None
        self.allow = list(allow)
        self.threshold = threshold
        self.engine = DetectionEngine(engine)
        if self.entities:  # an engine that cannot find a configured entity is a config error, not a silent pass
            unknown = sorted(set(self.entities) & NER_ENTITIES) if self.engine is DetectionEngine.PATTERNS else []
            if unknown:
                raise ConfigError(
                    f"PII engine 'patterns' cannot detect {', '.join(unknown)}: names, locations and "
                    "organisations need engine 'ner'"
                )

    def _analyze(self, texts: list[str]) -> list[list[Finding]]:
        found = detector(self.engine)
        found.check(self.entities)
        return found.analyze(texts, self.entities, self.allow, self.threshold)

    async def _find(self, texts: list[str]) -> list[list[Finding]]:
        """Findings for each text; every text of a call goes to one worker-thread hop
        (spaCy is CPU-bound) and, with NER, one ``nlp.pipe`` batch."""
        todo = [i for i, t in enumerate(texts) if t.strip()]
        found: list[list[Finding]] = [[] for _ in texts]
        if todo:
            results = await anyio.to_thread.run_sync(self._analyze, [texts[i] for i in todo])
            for i, result in zip(todo, results, strict=True):
                found[i] = result
        return found

    def _rewrite(self, text: str, found: list[Finding], masks: _Masks, where: str) -> str:
        if not found:
            return text
        if self.mode is PIIMode.BLOCK:
            kinds = sorted({f.entity for f in found})
            raise GuardrailBlocked(f"the {where} contains personal data ({', '.join(kinds)})", entities=kinds)
        out, last = [], 0
        for f in found:
            value = text[f.start : f.end]
            token = masks.placeholder(f.entity, value) if self.mode is PIIMode.MASK else f"<{f.entity}>"
            out += [text[last : f.start], token]
            last = f.end
        out.append(text[last:])
        return "".join(out)

    async def _check_text(self, text: str, where: str) -> str:
        found = await self._find([text])
        return self._rewrite(text, found[0], _Masks(), where)

    async def _guard_request(self, request: ChatRequest) -> tuple[ChatRequest, _Masks]:
        masks = _Masks()
        if self.on == "response":
            return request, masks
        texts = [t for m in request.messages for t in _texts(m)]
        found = iter(await self._find(texts))
        messages = []
        for message in request.messages:
            if isinstance(message.content, str):
                content: str | list[Any] = self._rewrite(message.content, next(found), masks, "request")
            elif message.content:
                content = [
                    TextPart(text=self._rewrite(p.text, next(found), masks, "request"))
                    if isinstance(p, TextPart)
                    else p
                    for p in message.content
                ]
            else:
                messages.append(message)
                continue
            messages.append(message.model_copy(update={"content": content}))
        return request.model_copy(update={"messages": messages}), masks

    async def chat(self, request: ChatRequest) -> ChatResponse:
        guarded, masks = await self._guard_request(request)
        response = await self.inner.chat(guarded)
        text = response.message.content
        if not isinstance(text, str):
            return response
        if self.on != "request":
            text = await self._check_text(text, "response")
        if self.mode is PIIMode.MASK:
            text = masks.restore(text)
        return response.model_copy(update={"message": response.message.model_copy(update={"content": text})})

    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        return self._stream(request)

    async def _stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Masked requests stream with placeholders restored; a placeholder split over
        chunks is held back until it is complete. With ``on: response|both`` the answer
        is checked whole, then sent as one chunk (it cannot be checked piecewise)."""
        if self.on != "request":
            response = await self.chat(request)
            yield ChatChunk(text=response.text, finish_reason=response.finish_reason, usage=response.usage)
            return
        guarded, masks = await self._guard_request(request)
        pending = ""
        async with closing_stream(self.inner.stream(guarded)) as chunks:
            async for chunk in chunks:
                if self.mode is not PIIMode.MASK:
                    yield chunk
                    continue
                pending += chunk.text
                cut = pending.rfind("<")
                hold = cut >= 0 and ">" not in pending[cut:] and chunk.finish_reason is None
                ready, pending = (pending[:cut], pending[cut:]) if hold else (pending, "")
                yield chunk.model_copy(update={"text": masks.restore(ready)})
        if pending:
            yield ChatChunk(text=masks.restore(pending))
