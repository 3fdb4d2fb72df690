"""The real APIs' wire formats, as the fake provider writes them.

Bodies, SSE events, error objects and headers follow what OpenAI (Chat
Completions, Embeddings), Anthropic (Messages), Hugging Face TGI (``/generate``,
``/generate_stream``) and the Hugging Face inference API send, so that the official
SDKs accept the fake's answers and raise their own exception classes for its
errors (the fidelity tests prove it).
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from legato.providers._types import ToolCall, Usage

__all__ = ["Answer", "count_tokens", "pieces", "vector_for"]


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def count_tokens(text: str) -> int:
    """About four characters per token, at least one for non-empty text."""
    return 0 if not text else max(1, math.ceil(len(text) / 4))


def pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def vector_for(text: str, dims: int) -> list[float]:
    """A deterministic unit vector for ``text`` (same text, same vector)."""
    raw = b""
    counter = 0
    while len(raw) < dims * 4:
        raw += hashlib.sha256(f"{counter}:{text}".encode()).digest()
        counter += 1
    ints = struct.unpack(f"<{dims}i", raw[: dims * 4])
    vec = [i / 2**31 for i in ints]
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [round(v / norm, 6) for v in vec]


@dataclass(frozen=True, slots=True)
class Answer:
    """A Reply resolved for one request: the text, calls, usage and ids to send."""

    id: str
    model: str
    text: str
    tool_calls: tuple[ToolCall, ...]
    finish_reason: str
    usage: Usage
    chunk_chars: int
    created: int


# --------------------------------------------------------------------------- OpenAI


def openai_usage(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": usage.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def openai_completion(a: Answer) -> bytes:
    message: dict[str, Any] = {"role": "assistant", "content": a.text or None, "refusal": None, "annotations": []}
    if a.tool_calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in a.tool_calls
        ]
    return _dumps(
        {
            "id": a.id,
            "object": "chat.completion",
            "created": a.created,
            "model": a.model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": a.finish_reason}],
            "usage": openai_usage(a.usage),
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        }
    )


def _json_text(text: str) -> bytes:
    return json.dumps(text, ensure_ascii=False).encode()


def openai_stream(a: Answer, include_usage: bool) -> Iterator[bytes]:
    """The ``chat.completion.chunk`` events of an answer. The bytes around each delta
    are built once (the same bytes ``json.dumps`` writes for the whole object), so a
    long stream costs the fake little more than the deltas themselves."""
    head = _dumps(
        {
            "id": a.id,
            "object": "chat.completion.chunk",
            "created": a.created,
            "model": a.model,
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        }
    )
    head = b"data: " + head[:-1] + b',"choices":[{"index":0,"delta":'
    tail = b"}]" + (b',"usage":null' if include_usage else b"") + b"}\n\n"

    def chunk(delta: bytes, finish: str | None = None) -> bytes:
        return head + delta + b',"logprobs":null,"finish_reason":' + _dumps(finish) + tail

    yield chunk(_dumps({"role": "assistant", "content": "" if a.text or not a.tool_calls else None, "refusal": None}))
    for piece in pieces(a.text, a.chunk_chars):
        yield chunk(b'{"content":' + _json_text(piece) + b"}")
    for index, call in enumerate(a.tool_calls):
        head_call = {
            "index": index,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        yield chunk(_dumps({"tool_calls": [head_call]}))
        for piece in pieces(call.arguments, a.chunk_chars):
            yield chunk(_dumps({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}))
    yield chunk(b"{}", a.finish_reason)
    if include_usage:
        final = {
            "id": a.id,
            "object": "chat.completion.chunk",
            "created": a.created,
            "model": a.model,
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
            "choices": [],
            "usage": openai_usage(a.usage),
        }
        yield b"data: " + _dumps(final) + b"\n\n"


OPENAI_DONE = b"data: [DONE]\n\n"


def openai_embeddings(model: str, vectors: list[Any], tokens: int) -> bytes:
    return _dumps(
        {
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


# --------------------------------------------------------------------------- Anthropic

_ANTHROPIC_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}


def anthropic_usage(usage: Usage, output_tokens: int | None = None) -> dict[str, Any]:
    # Anthropic's input_tokens excludes the tokens read from or written to the cache.
    return {
        "input_tokens": usage.input_tokens - usage.cached_input_tokens - usage.cache_write_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cached_input_tokens,
        "output_tokens": usage.output_tokens if output_tokens is None else output_tokens,
        "service_tier": "standard",
    }


def _tool_input(call: ToolCall) -> Any:
    try:
        return json.loads(call.arguments or "{}")
    except ValueError:
        return {}


def anthropic_message(a: Answer) -> bytes:
    content: list[dict[str, Any]] = []
    if a.text:
        content.append({"type": "text", "text": a.text})
    for call in a.tool_calls:
        content.append({"type": "tool_use", "id": call.id, "name": call.name, "input": _tool_input(call)})
    return _dumps(
        {
            "id": a.id,
            "type": "message",
            "role": "assistant",
            "model": a.model,
            "content": content,
            "stop_reason": _ANTHROPIC_STOP.get(a.finish_reason, "end_turn"),
            "stop_sequence": None,
            "usage": anthropic_usage(a.usage),
        }
    )


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + _dumps(data) + b"\n\n"


def anthropic_stream(a: Answer) -> Iterator[bytes]:
    start: dict[str, Any] = {
        "id": a.id,
        "type": "message",
        "role": "assistant",
        "model": a.model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": anthropic_usage(a.usage, output_tokens=1),
    }
    yield _event("message_start", {"type": "message_start", "message": start})
    index = 0
    if a.text:
        block = {"type": "text", "text": ""}
        yield _event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block})
        yield _event("ping", {"type": "ping"})
        text_delta = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":'
        text_delta += b'{"type":"text_delta","text":'
        for piece in pieces(a.text, a.chunk_chars):
            yield text_delta + _json_text(piece) + b"}}\n\n"
        yield _event("content_block_stop", {"type": "content_block_stop", "index": 0})
        index = 1
    for call in a.tool_calls:
        tool_block: dict[str, Any] = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
        yield _event(
            "content_block_start", {"type": "content_block_start", "index": index, "content_block": tool_block}
        )
        for piece in pieces(call.arguments, a.chunk_chars):
            delta = {"type": "input_json_delta", "partial_json": piece}
            yield _event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
        yield _event("content_block_stop", {"type": "content_block_stop", "index": index})
        index += 1
    stop = {"stop_reason": _ANTHROPIC_STOP.get(a.finish_reason, "end_turn"), "stop_sequence": None}
    usage = {"output_tokens": a.usage.output_tokens}
    yield _event("message_delta", {"type": "message_delta", "delta": stop, "usage": usage})


ANTHROPIC_STOP_EVENT = _event("message_stop", {"type": "message_stop"})


# --------------------------------------------------------------------------- TGI / HF

_TGI_FINISH = {"stop": "eos_token", "length": "length", "tool_calls": "eos_token", "content_filter": "stop_sequence"}


def tgi_generate(a: Answer, details: bool) -> bytes:
    body: dict[str, Any] = {"generated_text": a.text}
    if details:
        body["details"] = {
            "finish_reason": _TGI_FINISH.get(a.finish_reason, "eos_token"),
            "generated_tokens": a.usage.output_tokens,
            "seed": None,
            "prefill": [],
            "tokens": [],
        }
    return _dumps(body)


def tgi_stream(a: Answer) -> Iterator[bytes]:
    parts = pieces(a.text, a.chunk_chars) or [""]
    for i, piece in enumerate(parts):
        last = i == len(parts) - 1
        event: dict[str, Any] = {
            "index": i + 1,
            "token": {"id": i + 1, "text": piece, "logprob": -0.1, "special": False},
            "generated_text": a.text if last else None,
            "details": None,
        }
        if last:
            event["details"] = {
                "finish_reason": _TGI_FINISH.get(a.finish_reason, "eos_token"),
                "generated_tokens": a.usage.output_tokens,
                "input_length": a.usage.input_tokens,
                "seed": None,
            }
        yield b"data:" + _dumps(event) + b"\n\n"


def hf_task(
    task: str,
    inputs: list[str],
    *,
    single: bool,
    a: Answer,
    dims: int,
    labels: list[tuple[str, float]] | None,
    vectors: list[list[float]] | None,
) -> bytes:
    results: list[Any]
    if task == "feature-extraction":
        results = list(vectors) if vectors else [vector_for(t, dims) for t in inputs]
    elif task == "text-classification":
        pairs = labels or [("POSITIVE", 0.9), ("NEGATIVE", 0.1)]
        results = [[{"label": label, "score": score} for label, score in pairs] for _ in inputs]
    elif task == "token-classification":
        results = [_entities(t) for t in inputs]
    else:  # summarization
        results = [[{"summary_text": a.text or t[:60]}] for t in inputs]
    if task == "summarization":
        return _dumps(results[0] if single else [r[0] for r in results])
    if task == "text-classification":  # one list of labels per input, even for a single string
        return _dumps(results)
    return _dumps(results[0] if single else results)


def _entities(text: str) -> list[dict[str, Any]]:
    """Capitalised words as MISC entities, with character offsets."""
    out: list[dict[str, Any]] = []
    pos = 0
    for word in text.split():
        start = text.index(word, pos)
        pos = start + len(word)
        clean = word.strip(".,;:!?\"'()")
        if clean[:1].isupper():
            begin = start + word.index(clean)
            out.append(
                {"entity_group": "MISC", "score": 0.99, "word": clean, "start": begin, "end": begin + len(clean)}
            )
    return out
