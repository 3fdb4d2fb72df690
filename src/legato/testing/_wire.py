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
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from legato.providers._types import ToolCall, Usage

__all__ = ["Answer", "ErrorSpec", "error_response", "stream_error_event"]


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


# --------------------------------------------------------------------------- errors


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    status: int
    type: str
    message: str
    code: str | None = None
    param: str | None = None


_OPENAI_ERRORS: dict[str, ErrorSpec] = {
    "bad_request": ErrorSpec(400, "invalid_request_error", "Invalid value for 'temperature'.", None, "temperature"),
    "auth": ErrorSpec(
        401,
        "invalid_request_error",
        "Incorrect API key provided: sk-fake. You can find your API key at https://platform.openai.com/account/api-keys.",
        "invalid_api_key",
    ),
    "permission": ErrorSpec(
        403, "invalid_request_error", "You are not allowed to sample from this model", "model_not_available"
    ),
    "not_found": ErrorSpec(
        404,
        "invalid_request_error",
        "The model `{model}` does not exist or you do not have access to it.",
        "model_not_found",
    ),
    "rate_limit": ErrorSpec(
        429,
        "requests",
        "Rate limit reached for {model} in organization org-fake on requests per min (RPM): "
        "Limit 3, Used 3, Requested 1. Please try again in 20s.",
        "rate_limit_exceeded",
    ),
    "quota": ErrorSpec(
        429,
        "insufficient_quota",
        "You exceeded your current quota, please check your plan and billing details.",
        "insufficient_quota",
    ),
    "context_length": ErrorSpec(
        400,
        "invalid_request_error",
        "This model's maximum context length is 128000 tokens. However, your messages resulted in "
        "130000 tokens. Please reduce the length of the messages.",
        "context_length_exceeded",
        "messages",
    ),
    "content_filter": ErrorSpec(
        400,
        "invalid_request_error",
        "Your request was rejected as a result of our safety system.",
        "content_policy_violation",
    ),
    "server": ErrorSpec(
        500,
        "server_error",
        "The server had an error while processing your request. Sorry about that!",
    ),
    "overloaded": ErrorSpec(503, "server_error", "The engine is currently overloaded, please try again later"),
}

_ANTHROPIC_ERRORS: dict[str, ErrorSpec] = {
    "bad_request": ErrorSpec(400, "invalid_request_error", "temperature: Input should be less than or equal to 1"),
    "auth": ErrorSpec(401, "authentication_error", "invalid x-api-key"),
    "permission": ErrorSpec(
        403, "permission_error", "Your API key does not have permission to use the specified resource."
    ),
    "not_found": ErrorSpec(404, "not_found_error", "model: {model}"),
    "rate_limit": ErrorSpec(
        429,
        "rate_limit_error",
        "This request would exceed the rate limit for your organization of 50 requests per minute.",
    ),
    "quota": ErrorSpec(
        400,
        "invalid_request_error",
        "Your credit balance is too low to access the Anthropic API. "
        "Please go to Plans & Billing to upgrade or purchase credits.",
    ),
    "context_length": ErrorSpec(400, "invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum"),
    "content_filter": ErrorSpec(400, "invalid_request_error", "Output blocked by content filtering policy"),
    "server": ErrorSpec(500, "api_error", "Internal server error"),
    "overloaded": ErrorSpec(529, "overloaded_error", "Overloaded"),
}

_TGI_ERRORS: dict[str, ErrorSpec] = {
    "bad_request": ErrorSpec(422, "validation", "Input validation error: `temperature` must be strictly positive"),
    "auth": ErrorSpec(401, "authentication", "Invalid credentials in Authorization header"),
    "permission": ErrorSpec(403, "authentication", "Authorization header is correct, but the token seems invalid"),
    "not_found": ErrorSpec(404, "not_found", "Model {model} does not exist"),
    "rate_limit": ErrorSpec(429, "overloaded", "Model is overloaded"),
    "quota": ErrorSpec(402, "payment_required", "You have exceeded your monthly included credits for Inference."),
    "context_length": ErrorSpec(
        422,
        "validation",
        "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. "
        "Given: 4000 `inputs` tokens and 200 `max_new_tokens`",
    ),
    "content_filter": ErrorSpec(422, "validation", "Input validation error: the input was rejected"),
    "server": ErrorSpec(500, "generation", "Request failed during generation: Server error: CUDA out of memory"),
    "overloaded": ErrorSpec(503, "loading", "Model {model} is currently loading"),
}


def _rate_limit_headers(api: str, retry_after: float | None, retry_after_ms: int | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    if retry_after is not None:
        headers["retry-after"] = f"{retry_after:g}"
    if retry_after_ms is not None:
        headers["retry-after-ms"] = str(retry_after_ms)
    if api.startswith("openai"):
        wait = retry_after if retry_after is not None else 20.0
        headers.update(
            {
                "x-ratelimit-limit-requests": "3",
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-requests": f"{wait:g}s",
            }
        )
    elif api.startswith("anthropic"):
        reset = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + (retry_after or 60.0)))
        headers.update(
            {
                "anthropic-ratelimit-requests-limit": "50",
                "anthropic-ratelimit-requests-remaining": "0",
                "anthropic-ratelimit-requests-reset": reset,
            }
        )
    return headers


def error_response(
    api: str,
    kind: str,
    *,
    model: str,
    request_id: str,
    message: str | None = None,
    status: int | None = None,
    retry_after: float | None = None,
    retry_after_ms: int | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of the API's error response for ``kind``."""
    headers: dict[str, str] = {"content-type": "application/json"}
    if kind == "rate_limit" or retry_after is not None or retry_after_ms is not None:
        headers.update(_rate_limit_headers(api, retry_after, retry_after_ms))
    if api.startswith("openai"):
        spec = _OPENAI_ERRORS[kind]
        text = (message or spec.message).replace("{model}", model)
        body: Any = {"error": {"message": text, "type": spec.type, "param": spec.param, "code": spec.code}}
        headers["x-request-id"] = request_id
    elif api.startswith("anthropic"):
        spec = _ANTHROPIC_ERRORS[kind]
        text = (message or spec.message).replace("{model}", model)
        body = {"type": "error", "error": {"type": spec.type, "message": text}, "request_id": request_id}
        headers["request-id"] = request_id
    else:
        spec = _TGI_ERRORS[kind]
        text = (message or spec.message).replace("{model}", model)
        body = {"error": text, "error_type": spec.type}
        if api.startswith("hf") and kind == "overloaded":
            body = {"error": text, "estimated_time": retry_after if retry_after is not None else 20.0}
        headers["x-request-id"] = request_id
    return status or spec.status, headers, _dumps(body)


def stream_error_event(api: str, kind: str, *, model: str, request_id: str) -> bytes:
    """The mid-stream error event each API sends when it fails after the 200."""
    if api.startswith("anthropic"):
        spec = _ANTHROPIC_ERRORS[kind]
        data = {"type": "error", "error": {"type": spec.type, "message": spec.message.replace("{model}", model)}}
        return b"event: error\ndata: " + _dumps(data) + b"\n\n"
    if api.startswith("openai"):
        spec = _OPENAI_ERRORS[kind]
        err = {"message": spec.message.replace("{model}", model), "type": spec.type, "param": None, "code": spec.code}
        return b"data: " + _dumps({"error": err}) + b"\n\n"
    tgi = _TGI_ERRORS[kind]
    return b"data:" + _dumps({"error": tgi.message.replace("{model}", model), "error_type": tgi.type}) + b"\n\n"


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


def openai_stream(a: Answer, include_usage: bool) -> Iterator[bytes]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        body: dict[str, Any] = {
            "id": a.id,
            "object": "chat.completion.chunk",
            "created": a.created,
            "model": a.model,
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            body["usage"] = None
        return b"data: " + _dumps(body) + b"\n\n"

    yield chunk({"role": "assistant", "content": "" if a.text or not a.tool_calls else None, "refusal": None})
    for piece in pieces(a.text, a.chunk_chars):
        yield chunk({"content": piece})
    for index, call in enumerate(a.tool_calls):
        head = {"index": index, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}
        yield chunk({"tool_calls": [head]})
        for piece in pieces(call.arguments, a.chunk_chars):
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    yield chunk({}, a.finish_reason)
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
        for piece in pieces(a.text, a.chunk_chars):
            delta = {"type": "text_delta", "text": piece}
            yield _event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
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
