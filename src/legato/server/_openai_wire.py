"""The OpenAI Chat Completions / Embeddings wire format, as the gateway receives and answers it.

Requests are pydantic models (they make the OpenAPI spec and validate input with
messages that name the field); :func:`chat_request` turns one into legato's
:class:`~legato.providers.ChatRequest`, :func:`completion` and :class:`ChunkWriter` turn
legato's responses and chunks back into OpenAI JSON and events. This is the server side of the
format: the provider adapters hold the client side (the opposite direction), so the
two mappings share no code.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import time
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, model_validator
from pydantic.config import JsonDict

from legato.errors import ModelError
from legato.providers import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbedResponse,
    ImagePart,
    Message,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCall,
    Usage,
)
from legato.server._body import WireModel
from legato.server._errors import from_exception
from legato.server._streams import json_text

MAX_INPUTS = 2048  # texts in one embeddings request

__all__ = [
    "ChatCompletionRequest",
    "ChunkWriter",
    "EmbeddingRequest",
    "chat_request",
    "completion",
    "embeddings",
    "image_urls",
]


class _Wire(WireModel):
    model_config = ConfigDict(extra="ignore")


class ImageURL(_Wire):
    url: str = Field(max_length=20_000_000, pattern=r"^(https?://|data:)")
    detail: Literal["auto", "low", "high"] | None = None


class TextContent(_Wire):
    type: Literal["text"]
    text: str


class ImageContent(_Wire):
    type: Literal["image_url"]
    image_url: ImageURL


class FunctionCall(_Wire):
    name: str
    arguments: str = "{}"


class ToolCallWire(_Wire):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class SystemMessage(_Wire):
    role: Literal["system", "developer"]
    content: str | list[TextContent]
    name: str | None = None


class UserMessage(_Wire):
    role: Literal["user"]
    content: str | list[TextContent | ImageContent]
    name: str | None = None


_CONTENT_OR_CALLS: JsonDict = {
    "anyOf": [
        {"required": ["content"], "properties": {"content": {"not": {"type": "null"}}}},
        {"required": ["tool_calls"], "properties": {"tool_calls": {"type": "array", "minItems": 1}}},
    ]
}


class AssistantMessage(_Wire):
    model_config = ConfigDict(json_schema_extra=_CONTENT_OR_CALLS)

    role: Literal["assistant"]
    content: str | list[TextContent] | None = None
    name: str | None = None
    tool_calls: list[ToolCallWire] | None = None

    @model_validator(mode="after")
    def _content_or_calls(self) -> AssistantMessage:
        if self.content is None and not self.tool_calls:
            raise ValueError("an assistant message needs content or tool_calls")
        return self


class ToolMessage(_Wire):
    role: Literal["tool"]
    content: str | list[TextContent]
    tool_call_id: str = Field(min_length=1)


ChatMessage = Annotated[SystemMessage | UserMessage | AssistantMessage | ToolMessage, Field(discriminator="role")]


class FunctionDef(_Wire):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDef(_Wire):
    type: Literal["function"] = "function"
    function: FunctionDef


class NamedToolChoiceFunction(_Wire):
    name: str


class NamedToolChoice(_Wire):
    type: Literal["function"] = "function"
    function: NamedToolChoiceFunction


class JSONSchemaFormat(_Wire):
    name: str = "response"
    schema_: dict[str, Any] = Field(alias="schema", min_length=1)
    strict: bool | None = None


class TextFormat(_Wire):
    type: Literal["text", "json_object"]


class JSONSchemaResponseFormat(_Wire):
    type: Literal["json_schema"]
    json_schema: JSONSchemaFormat


ResponseFormatWire = Annotated[TextFormat | JSONSchemaResponseFormat, Field(discriminator="type")]


class StreamOptions(_Wire):
    include_usage: bool = False


class ChatCompletionRequest(_Wire):
    """``POST /v1/chat/completions``. Unsupported knobs (``n`` > 1, logprobs) are refused."""

    model: str = Field(min_length=1, max_length=200)
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = Field(None, ge=1, le=1, description="Only one choice is supported.")
    tools: list[ToolDef] | None = None
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    response_format: ResponseFormatWire | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(None, max_length=256)


class EmbeddingRequest(_Wire):
    """``POST /v1/embeddings``. Token-array inputs are not supported; send text."""

    model: str = Field(min_length=1, max_length=200)
    input: str | Annotated[list[str], Field(min_length=1, max_length=MAX_INPUTS)]
    dimensions: int | None = Field(None, ge=1)
    encoding_format: Literal["float", "base64"] | None = None
    user: str | None = None


def _content(content: str | Sequence[TextContent | ImageContent] | None) -> str | list[TextPart | ImagePart] | None:
    if content is None or isinstance(content, str):
        return content
    parts: list[TextPart | ImagePart] = []
    for part in content:
        if isinstance(part, TextContent):
            parts.append(TextPart(text=part.text))
        else:
            parts.append(ImagePart(url=part.image_url.url, detail=part.image_url.detail))
    return parts


def _message(m: SystemMessage | UserMessage | AssistantMessage | ToolMessage) -> Message:
    wire_calls = m.tool_calls if isinstance(m, AssistantMessage) else None
    calls = [ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments) for c in wire_calls or []]
    return Message(
        role="system" if m.role == "developer" else m.role,
        content=_content(m.content),
        name=None if isinstance(m, ToolMessage) else m.name,
        tool_calls=calls or None,
        tool_call_id=m.tool_call_id if isinstance(m, ToolMessage) else None,
    )


def _response_format(rf: ResponseFormatWire | None) -> ResponseFormat | None:
    if rf is None:
        return None
    if isinstance(rf, JSONSchemaResponseFormat):
        spec = rf.json_schema
        return ResponseFormat(type="json_schema", json_schema=spec.schema_, name=spec.name, strict=spec.strict)
    return ResponseFormat(type=rf.type)


def chat_request(body: ChatCompletionRequest, *, metadata: dict[str, Any]) -> ChatRequest:
    """legato's request for an OpenAI one. Raises pydantic ``ValidationError`` when invalid."""
    wire_choice = body.tool_choice
    choice = wire_choice.function.name if isinstance(wire_choice, NamedToolChoice) else wire_choice
    tools = [
        Tool(
            name=t.function.name,
            description=t.function.description,
            parameters=t.function.parameters or {"type": "object", "properties": {}},
            strict=t.function.strict,
        )
        for t in body.tools or []
    ]
    return ChatRequest(
        messages=[_message(m) for m in body.messages],
        model=body.model,
        temperature=body.temperature,
        top_p=body.top_p,
        max_tokens=body.max_completion_tokens or body.max_tokens,
        stop=[body.stop] if isinstance(body.stop, str) else body.stop,
        seed=body.seed,
        tools=tools or None,
        tool_choice=choice,
        response_format=_response_format(body.response_format),
        user=body.user,
        metadata=metadata,
    )


def image_urls(body: ChatCompletionRequest) -> list[str]:
    return [
        p.image_url.url
        for m in body.messages
        if isinstance(m.content, list)
        for p in m.content
        if isinstance(p, ImageContent)
    ]


_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}


def finish_reason(reason: str | None, has_tools: bool) -> str:
    if reason is None:
        return "tool_calls" if has_tools else "stop"
    return _FINISH.get(reason, reason)


def usage(u: Usage) -> dict[str, Any]:
    out: dict[str, Any] = {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.total_tokens,
    }
    if u.cached_input_tokens:
        out["prompt_tokens_details"] = {"cached_tokens": u.cached_input_tokens}
    if u.reasoning_tokens:
        out["completion_tokens_details"] = {"reasoning_tokens": u.reasoning_tokens}
    return out


def new_id() -> str:
    return "chatcmpl-" + os.urandom(16).hex()  # as unique as uuid4().hex, a quarter of its cost


def completion(resp: ChatResponse, model: str) -> dict[str, Any]:
    msg = resp.message
    message: dict[str, Any] = {"role": "assistant", "content": msg.text if msg.content is not None else None}
    if msg.tool_calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in msg.tool_calls
        ]
    return {
        "id": resp.id if resp.id and resp.id.startswith("chatcmpl") else new_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": finish_reason(resp.finish_reason, bool(msg.tool_calls)),
                "logprobs": None,
            }
        ],
        "usage": usage(resp.usage),
    }


def _dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def chunk_delta(chunk: ChatChunk) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    if chunk.text:
        delta["content"] = chunk.text
    if chunk.tool_calls:
        calls = []
        for d in chunk.tool_calls:
            call: dict[str, Any] = {"index": d.index}
            if d.id is not None:
                call["id"] = d.id
                call["type"] = "function"
            fn: dict[str, Any] = {"arguments": d.arguments}
            if d.name is not None:
                fn["name"] = d.name
            call["function"] = fn
            calls.append(call)
        delta["tool_calls"] = calls
    return delta


class ChunkWriter:
    """Turns legato chunks into ``chat.completion.chunk`` events (``data: {...}``).

    The id, creation time and model of a stream are encoded once: a text chunk costs
    one JSON string escape between pre-built bytes. The first event carries the role,
    the last ones the finish reason, the usage (with ``stream_options.include_usage``)
    and ``[DONE]``.
    """

    def __init__(self, model: str, include_usage: bool) -> None:
        self._head = b"".join(
            (
                b'data: {"id":',
                json_text(new_id()),
                b',"object":"chat.completion.chunk","created":',
                str(int(time.time())).encode(),
                b',"model":',
                json_text(model),
                b',"choices":',
            )
        )
        self._text = self._head + b'[{"index":0,"delta":{"content":'
        self.include_usage = include_usage
        self._had_tools = False

    def _event(self, delta: bytes, finish: bytes = b"null") -> bytes:
        return self._head + b'[{"index":0,"delta":' + delta + b',"finish_reason":' + finish + b',"logprobs":null}]}\n\n'

    def start(self) -> bytes:
        return self._event(b'{"role":"assistant","content":""}')

    def chunk(self, chunk: ChatChunk) -> bytes:
        if chunk.tool_calls:
            self._had_tools = True
            return self._event(_dumps(chunk_delta(chunk)))
        if chunk.text:
            return self._text + json_text(chunk.text) + b'},"finish_reason":null,"logprobs":null}]}\n\n'
        return b""

    def finish(self, reason: str | None, usage_: Usage | None) -> bytes:
        out = self._event(b"{}", json_text(finish_reason(reason, self._had_tools)))
        if self.include_usage:
            out += self._head + b'[],"usage":' + _dumps(usage(usage_ or Usage())) + b"}\n\n"
        return out + b"data: [DONE]\n\n"

    def error(self, exc: ModelError) -> bytes:
        return b"data: " + _dumps(from_exception(exc).body(anthropic=False)) + b"\n\n"


def _base64_floats(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def embeddings(resp: EmbedResponse, model: str, encoding: str | None = None) -> dict[str, Any]:
    encode: Any = _base64_floats if encoding == "base64" else (lambda v: v)
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": encode(v)} for i, v in enumerate(resp.vectors)],
        "model": model,
        "usage": {"prompt_tokens": resp.usage.input_tokens, "total_tokens": resp.usage.total_tokens},
    }
