"""Offline token estimates for pre-call cost checks.

No tokenizer is downloaded at run time, so the estimate is a character heuristic:
characters divided by a per-provider ratio (BPE tokenizers of current models
average about 4 characters per token on English text, Claude's about 3.5), plus
the per-message framing tokens the chat formats add, plus a fixed amount per image
(OpenAI bills 85 tokens for a low-detail image and 765 for a typical 1024px one).
It is deliberately a little pessimistic: budgets should fire early, not late.
"""

from __future__ import annotations

import json
import math

from legato.providers._types import ChatRequest, EmbedRequest, ImagePart

__all__ = ["CHARS_PER_TOKEN", "estimate_output_tokens", "estimate_text_tokens", "estimate_tokens"]

CHARS_PER_TOKEN: dict[str, float] = {"openai": 4.0, "azure": 4.0, "anthropic": 3.5, "huggingface": 3.8}
_DEFAULT_RATIO = 3.8
_MESSAGE_OVERHEAD = 4
_REPLY_PRIMER = 3
_IMAGE_LOW, _IMAGE_HIGH = 85, 765


def estimate_text_tokens(text: str, provider: str | None = None) -> int:
    if not text:
        return 0
    ratio = CHARS_PER_TOKEN.get(provider or "", _DEFAULT_RATIO)
    return max(1, math.ceil(len(text) / ratio))


def estimate_tokens(request: ChatRequest | EmbedRequest, provider: str | None = None) -> int:
    """Estimated input tokens of ``request`` for ``provider`` (``openai``, ``anthropic``...)."""
    if isinstance(request, EmbedRequest):
        return sum(estimate_text_tokens(t, provider) for t in request.inputs)
    total = _REPLY_PRIMER
    for message in request.messages:
        total += _MESSAGE_OVERHEAD
        if isinstance(message.content, str):
            total += estimate_text_tokens(message.content, provider)
        elif message.content is not None:
            for part in message.content:
                if isinstance(part, ImagePart):
                    total += _IMAGE_LOW if part.detail == "low" else _IMAGE_HIGH
                else:
                    total += estimate_text_tokens(part.text, provider)
        for call in message.tool_calls or ():
            total += estimate_text_tokens(call.name + call.arguments, provider) + _MESSAGE_OVERHEAD
    for tool in request.tools or ():
        schema = json.dumps(tool.parameters, separators=(",", ":"))
        total += estimate_text_tokens(tool.name + (tool.description or "") + schema, provider) + _MESSAGE_OVERHEAD
    if request.response_format is not None and request.response_format.json_schema:
        total += estimate_text_tokens(json.dumps(request.response_format.json_schema), provider)
    return total


def estimate_output_tokens(request: ChatRequest, default: int = 256) -> int:
    """The most output a call can bill: ``max_tokens`` when set, else ``default``."""
    return request.max_tokens or default
