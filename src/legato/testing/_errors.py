"""The real APIs' error responses, as the fake provider sends them.

Status, body shape, error type/code and headers per API (OpenAI, Anthropic, TGI and
the Hugging Face inference API) for each error kind of :data:`ERROR_KINDS`,
including the rate-limit headers and the mid-stream error events.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["ErrorSpec", "error_response", "stream_error_event"]


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


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
