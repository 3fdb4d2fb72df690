"""The Anthropic Messages wire format, as the gateway receives and answers it.

:func:`chat_request` maps ``POST /v1/messages`` to legato's
:class:`~legato.providers.ChatRequest` (system prompt to a system message, content
blocks to parts, ``tool_use``/``tool_result`` blocks to tool calls and tool
messages); :func:`message` and :class:`StreamWriter` map legato's answers back to a
Message object and to the Messages SSE event sequence (``message_start``,
``content_block_start/delta/stop``, ``message_delta``, ``message_stop``).
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from legato.errors import ModelError
from legato.providers import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    ImagePart,
    Message,
    TextPart,
    Tool,
    ToolCall,
    Usage,
)
from legato.server._body import WireModel
from legato.server._errors import from_exception
from legato.server._streams import json_text

__all__ = [
    "CountTokensRequest",
    "MessagesRequest",
    "StreamWriter",
    "chat_request",
    "count_request",
    "image_urls",
    "message",
]


class _Wire(WireModel):
    model_config = ConfigDict(extra="ignore")


class TextBlock(_Wire):
    type: Literal["text"]
    text: str


class Base64Source(_Wire):
    type: Literal["base64"]
    media_type: str = Field(min_length=1)
    data: str = Field(min_length=1)


class URLSource(_Wire):
    type: Literal["url"]
    url: str = Field(pattern=r"^https?://")


class ImageBlock(_Wire):
    type: Literal["image"]
    source: Annotated[Base64Source | URLSource, Field(discriminator="type")]


class ToolUseBlock(_Wire):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any] = Field(default_factory=dict)


class ToolResultBlock(_Wire):
    type: Literal["tool_result"]
    tool_use_id: str = Field(min_length=1)
    content: str | list[TextBlock | ImageBlock] | None = None
    is_error: bool | None = None


Block = TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock


class MessageParam(_Wire):
    role: Literal["user", "assistant"]
    content: Annotated[str, Field(min_length=1)] | Annotated[list[Block], Field(min_length=1)]


class ToolParam(_Wire):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    input_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class ToolChoiceMode(_Wire):
    type: Literal["auto", "any", "none"]


class ToolChoiceTool(_Wire):
    type: Literal["tool"]
    name: str = Field(min_length=1)


ToolChoice = Annotated[ToolChoiceMode | ToolChoiceTool, Field(discriminator="type")]


class CountTokensRequest(_Wire):
    """``POST /v1/messages/count_tokens``: the conversation of a Messages request."""

    model: str = Field(min_length=1, max_length=200)
    messages: list[MessageParam] = Field(min_length=1)
    system: str | list[TextBlock] | None = None
    tools: list[ToolParam] | None = None
    tool_choice: ToolChoice | None = None


class MessagesRequest(CountTokensRequest):
    """``POST /v1/messages``."""

    max_tokens: int = Field(ge=1)
    stop_sequences: list[str] | None = None
    temperature: float | None = Field(None, ge=0, le=1)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=1)
    stream: bool = False


def _image(block: ImageBlock) -> ImagePart:
    src = block.source
    if isinstance(src, URLSource):
        return ImagePart(url=src.url)
    return ImagePart(url=f"data:{src.media_type};base64,{src.data}")


def _parts(blocks: list[TextBlock | ImageBlock]) -> list[TextPart | ImagePart]:
    return [TextPart(text=b.text) if isinstance(b, TextBlock) else _image(b) for b in blocks]


def _messages(m: MessageParam) -> list[Message]:
    if isinstance(m.content, str):
        return [Message(role=m.role, content=m.content)]
    out: list[Message] = []
    parts: list[TextPart | ImagePart] = []
    calls: list[ToolCall] = []
    for block in m.content:
        if isinstance(block, ToolResultBlock):
            content = block.content if block.content is not None else ""
            text = (
                content
                if isinstance(content, str)
                else "".join(p.text for p in _parts(content) if isinstance(p, TextPart))
            )
            out.append(Message(role="tool", tool_call_id=block.tool_use_id, content=text))
        elif isinstance(block, ToolUseBlock):
            calls.append(ToolCall(id=block.id, name=block.name, arguments=json.dumps(block.input)))
        else:
            parts.append(_parts([block])[0])
    if parts or calls:
        out.append(Message(role=m.role, content=parts or None, tool_calls=calls or None))
    return out


def chat_request(body: MessagesRequest, *, metadata: dict[str, Any]) -> ChatRequest:
    """legato's request for an Anthropic one. Raises ``ValueError`` (pydantic) when invalid."""
    messages, tools, choice = _conversation(body)
    return ChatRequest(
        messages=messages,
        model=body.model,
        temperature=body.temperature,
        top_p=body.top_p,
        max_tokens=body.max_tokens,
        stop=body.stop_sequences,
        tools=tools or None,
        tool_choice=choice,
        metadata=metadata,
    )


def count_request(body: CountTokensRequest) -> ChatRequest:
    """The conversation of a ``count_tokens`` body as legato's request (never sent)."""
    messages, tools, choice = _conversation(body)
    return ChatRequest(messages=messages, model=body.model, tools=tools or None, tool_choice=choice)


def _conversation(body: CountTokensRequest) -> tuple[list[Message], list[Tool], str | None]:
    messages: list[Message] = []
    if body.system:
        text = body.system if isinstance(body.system, str) else "\n".join(b.text for b in body.system)
        messages.append(Message(role="system", content=text))
    for m in body.messages:
        messages.extend(_messages(m))
    choice: str | None = None
    if isinstance(body.tool_choice, ToolChoiceTool):
        choice = body.tool_choice.name
    elif body.tool_choice is not None:
        choice = {"auto": "auto", "any": "required", "none": "none"}[body.tool_choice.type]
    tools = [Tool(name=t.name, description=t.description, parameters=t.input_schema) for t in body.tools or []]
    return messages, tools, choice


def image_urls(body: CountTokensRequest) -> list[str]:
    urls: list[str] = []
    for m in body.messages:
        if isinstance(m.content, str):
            continue
        for block in m.content:
            blocks = (
                block.content if isinstance(block, ToolResultBlock) and isinstance(block.content, list) else [block]
            )
            urls.extend(b.source.url for b in blocks if isinstance(b, ImageBlock) and isinstance(b.source, URLSource))
    return urls


_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}


def stop_reason(reason: str | None, has_tools: bool) -> str:
    if reason is None:
        return "tool_use" if has_tools else "end_turn"
    return _STOP.get(
        reason, reason if reason in ("end_turn", "max_tokens", "stop_sequence", "tool_use") else "end_turn"
    )


def _usage(u: Usage) -> dict[str, Any]:
    return {
        "input_tokens": u.input_tokens - u.cached_input_tokens - u.cache_write_tokens,
        "output_tokens": u.output_tokens,
        "cache_read_input_tokens": u.cached_input_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
    }


def _tool_input(arguments: str) -> Any:
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        return {"_raw": arguments}
    return value if isinstance(value, dict) else {"value": value}


def new_id() -> str:
    return "msg_" + os.urandom(16).hex()


def message(resp: ChatResponse, model: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if resp.message.text:
        content.append({"type": "text", "text": resp.message.text})
    for call in resp.message.tool_calls or []:
        content.append({"type": "tool_use", "id": call.id, "name": call.name, "input": _tool_input(call.arguments)})
    return {
        "id": resp.id if resp.id and resp.id.startswith("msg_") else new_id(),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(resp.finish_reason, bool(resp.message.tool_calls)),
        "stop_sequence": None,
        "usage": _usage(resp.usage),
    }


def event(name: str, data: dict[str, Any]) -> bytes:
    return (
        f"event: {name}\ndata: ".encode()
        + json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
        + b"\n\n"
    )


class StreamWriter:
    """Turns legato chunks into the Messages SSE event sequence.

    A text delta in the open text block costs one JSON string escape between bytes
    built when the block opened."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.id = new_id()
        self._open: int | None = None  # index of the open content block
        self._kind: str | None = None  # "text" or "tool:<legato index>"
        self._next = 0
        self._had_tools = False
        self._text_head = b""  # a text_delta event of the open block, up to its text

    def start(self) -> bytes:
        msg: dict[str, Any] = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return event("message_start", {"type": "message_start", "message": msg})

    def _switch(self, kind: str, block: dict[str, Any]) -> bytes:
        out = b""
        if self._kind == kind:
            return out
        out += self._close()
        self._open, self._kind = self._next, kind
        self._next += 1
        return out + event(
            "content_block_start", {"type": "content_block_start", "index": self._open, "content_block": block}
        )

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        index, self._open, self._kind = self._open, None, None
        return event("content_block_stop", {"type": "content_block_stop", "index": index})

    def chunk(self, chunk: ChatChunk) -> bytes:
        out = b""
        if chunk.text:
            if self._kind != "text":
                out += self._switch("text", {"type": "text", "text": ""})
                self._text_head = (
                    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
                    + str(self._open).encode()
                    + b',"delta":{"type":"text_delta","text":'
                )
            out += self._text_head + json_text(chunk.text) + b"}}\n\n"
        for d in chunk.tool_calls or ():
            self._had_tools = True
            kind = f"tool:{d.index}"
            if self._kind != kind:
                block = {
                    "type": "tool_use",
                    "id": d.id or f"toolu_{uuid.uuid4().hex[:24]}",
                    "name": d.name or "",
                    "input": {},
                }
                out += self._switch(kind, block)
            if d.arguments:
                out += event(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": self._open,
                        "delta": {"type": "input_json_delta", "partial_json": d.arguments},
                    },
                )
        return out

    def finish(self, reason: str | None, usage: Usage | None) -> bytes:
        u = usage or Usage()
        out = self._close()
        out += event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason(reason, self._had_tools), "stop_sequence": None},
                "usage": {"output_tokens": u.output_tokens, "input_tokens": u.input_tokens},
            },
        )
        return out + event("message_stop", {"type": "message_stop"})

    def error(self, exc: ModelError) -> bytes:
        return event("error", from_exception(exc).body(anthropic=True))
