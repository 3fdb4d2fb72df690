"""Anthropic Messages API.

Mapping from our OpenAI-shaped types: system messages become the top-level
``system``; tool results become ``tool_result`` blocks in a user turn (consecutive
turns of one role are merged, as the API requires alternation); assistant tool
calls become ``tool_use`` blocks; ``max_tokens`` (required by the API) defaults to
``default_max_tokens``. A ``json_schema`` response format is served by a forced
tool whose input schema is the schema; its input comes back as the message text.

Streams handle ``message_start``, ``content_block_start/delta/stop`` (text and
``input_json_delta``), ``message_delta`` (stop reason, output tokens), ``ping``,
``message_stop`` and mid-stream ``error`` events. Tool-call deltas are indexed
0..n-1 over the tool blocks only, like OpenAI's.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from legato.errors import BadRequest, ModelError
from legato.providers._errors import translate_anthropic
from legato.providers._http import HttpModel, Progress
from legato.providers._sse import loads
from legato.providers._tokens import estimate_text_tokens, estimate_tokens
from legato.providers._types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    ImagePart,
    Message,
    ToolCall,
    ToolCallDelta,
    Usage,
)

__all__ = ["AnthropicModel"]

ANTHROPIC_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
_STOP = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "stop",
}
_SCHEMA_TOOL_DESCRIPTION = "Give the answer as the input of this tool, matching its schema exactly."


def _image(part: ImagePart) -> dict[str, Any]:
    if part.url.startswith("data:"):
        header, _, data = part.url.partition(",")
        media_type = header[5:].split(";")[0] or "image/png"
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": part.url}}


def _blocks(message: Message) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if isinstance(message.content, str):
        if message.content:
            blocks.append({"type": "text", "text": message.content})
    elif message.content is not None:
        for part in message.content:
            blocks.append(_image(part) if isinstance(part, ImagePart) else {"type": "text", "text": part.text})
    return blocks


def _tool_input(call: ToolCall) -> Any:
    try:
        return json.loads(call.arguments or "{}")
    except ValueError:
        raise BadRequest(f"tool call {call.id!r} has arguments that are not JSON", provider="anthropic") from None


def anthropic_messages(messages: list[Message]) -> tuple[str | None, list[dict[str, Any]]]:
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            system.append(m.text)
            continue
        if m.role == "tool":
            role = "user"
            content: list[dict[str, Any]] = [{"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.text}]
        else:
            role = m.role
            content = _blocks(m)
            for call in m.tool_calls or ():
                content.append({"type": "tool_use", "id": call.id, "name": call.name, "input": _tool_input(call)})
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(content)
        else:
            turns.append({"role": role, "content": content})
    return ("\n\n".join(system) if system else None), turns


def anthropic_usage(raw: Any) -> Usage:
    raw = raw if isinstance(raw, dict) else {}
    read = int(raw.get("cache_read_input_tokens") or 0)
    written = int(raw.get("cache_creation_input_tokens") or 0)
    return Usage(
        input_tokens=int(raw.get("input_tokens") or 0) + read + written,
        output_tokens=int(raw.get("output_tokens") or 0),
        cached_input_tokens=read,
        cache_write_tokens=written,
    )


class AnthropicModel(HttpModel):
    """Claude models through the Messages API.

    Args:
        model: e.g. ``claude-sonnet-4-5``.
        api_key: sent as ``x-api-key``.
        base_url: ``https://api.anthropic.com`` by default.
        default_max_tokens: sent when the request has no ``max_tokens``.
        api_version: the ``anthropic-version`` header.
        beta: values for the ``anthropic-beta`` header.
    """

    provider = "anthropic"

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        default_max_tokens: int = 4096,
        api_version: str = API_VERSION,
        beta: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        headers = dict(kwargs.pop("headers", None) or {})
        headers["anthropic-version"] = api_version
        if beta:
            headers["anthropic-beta"] = ",".join(beta)
        super().__init__(model, base_url=base_url or ANTHROPIC_URL, api_key=api_key, headers=headers, **kwargs)
        self.default_max_tokens = default_max_tokens

    def _auth_headers(self) -> dict[str, str]:
        return {"x-api-key": self.api_key} if self.api_key else {}

    def _translate(self, status: int, body: bytes) -> tuple[type[ModelError], str, str | None, float | None]:
        cls, message, code = translate_anthropic(status, body)
        return cls, message, code, None

    def _payload(self, request: ChatRequest) -> dict[str, Any]:
        system, turns = anthropic_messages(request.messages)
        body: dict[str, Any] = {
            "model": request.model or self.model,
            "messages": turns,
            "max_tokens": request.max_tokens or self.default_max_tokens,
        }
        rf = request.response_format
        if rf is not None and rf.type == "json_object":
            hint = "Respond with a single JSON object and nothing else."
            system = f"{system}\n\n{hint}" if system else hint
        if system:
            body["system"] = system
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop_sequences"] = request.stop
        if request.user:
            body["metadata"] = {"user_id": request.user}
        tools: list[dict[str, Any]] = [
            {"name": t.name, "input_schema": t.parameters, **({"description": t.description} if t.description else {})}
            for t in request.tools or ()
        ]
        choice = request.tool_choice
        if rf is not None and rf.type == "json_schema":
            tools.append({"name": rf.name, "description": _SCHEMA_TOOL_DESCRIPTION, "input_schema": rf.json_schema})
            body["tool_choice"] = {"type": "tool", "name": rf.name}
        elif choice is not None:
            mapped = {"auto": {"type": "auto"}, "required": {"type": "any"}, "none": {"type": "none"}}
            body["tool_choice"] = mapped.get(choice, {"type": "tool", "name": choice})
        if tools:
            body["tools"] = tools
        return body

    def _schema_tool(self, request: ChatRequest) -> str | None:
        rf = request.response_format
        return rf.name if rf is not None and rf.type == "json_schema" else None

    # ------------------------------------------------------------------ chat

    async def chat(self, request: ChatRequest) -> ChatResponse:
        self._check(request)
        started = self._clock()
        data, headers = await self._post("/v1/messages", self._payload(request))
        if not isinstance(data, dict) or not isinstance(data.get("content"), list):
            raise self._malformed("a message without content", headers)
        schema_tool = self._schema_tool(request)
        texts: list[str] = []
        calls: list[ToolCall] = []
        for block in data["content"]:
            kind = block.get("type")
            if kind == "text":
                texts.append(block.get("text", ""))
            elif kind == "tool_use":
                args = json.dumps(block.get("input") or {}, ensure_ascii=False)
                if block.get("name") == schema_tool:
                    texts.append(args)
                else:
                    calls.append(ToolCall(id=block["id"], name=block["name"], arguments=args))
        finish = _STOP.get(data.get("stop_reason") or "", data.get("stop_reason"))
        if schema_tool and finish == "tool_calls" and not calls:
            finish = "stop"
        usage = anthropic_usage(data.get("usage"))
        model = data.get("model") or request.model or self.model
        text = "".join(texts)
        response = ChatResponse(
            message=Message(role="assistant", content=text if (text or not calls) else None, tool_calls=calls or None),
            model=model,
            provider=self.provider,
            id=data.get("id"),
            finish_reason=finish,
            usage=usage,
            cost=self._cost(model, usage),
            latency_s=self._clock() - started,
            request_id=self._request_id(headers),
        )
        return self._finish(response)

    # ------------------------------------------------------------------ stream

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        self._check(request)
        payload = self._payload(request)
        payload["stream"] = True
        schema_tool = self._schema_tool(request)
        state = _StreamState(model=request.model or self.model)
        async with self._open_stream("/v1/messages", payload, state) as (response, batches):
            async for batch in batches:
                for event in batch:
                    try:
                        data = loads(event.data)
                    except ValueError:
                        raise self._malformed(
                            "a stream event that is not JSON", response.headers, retryable=not state.delivered
                        ) from None
                    kind = data.get("type") if isinstance(data, dict) else None
                    if kind == "error" or event.event == "error":
                        self._stream_error(data, response.headers, state.delivered)
                    if kind == "message_stop":
                        break
                    chunk = state.apply(kind, data, schema_tool, self.provider)
                    if chunk is not None:
                        state.delivered = True
                        yield chunk
                else:
                    continue
                break
            else:
                raise self._interrupted(response, "without message_stop", state.delivered)
        if state.usage.input_tokens == 0 and state.usage.output_tokens == 0:
            state.usage = Usage(
                input_tokens=estimate_tokens(request, self.provider),
                output_tokens=estimate_text_tokens("".join(state.text), self.provider),
            )
        final = ChatChunk(
            finish_reason=state.finish or "stop",
            usage=state.usage,
            cost=self._cost(state.model, state.usage),
            model=state.model,
            provider=self.provider,
            id=state.id,
        )
        yield self._finish_chunk(final)

    def _stream_error(self, data: Any, headers: Any, delivered: bool) -> None:
        cls, message, code = translate_anthropic(500, data)
        raise cls(
            f"error event in the stream: {message}",
            provider=self.provider,
            model=self.model,
            request_id=self._request_id(headers),
            code=code,
            retryable=None if not delivered else False,
        )


class _StreamState(Progress):
    """What a Messages stream has said so far."""

    def __init__(self, model: str) -> None:
        super().__init__()
        self.model = model
        self.id: str | None = None
        self.usage = Usage()
        self.finish: str | None = None
        self.delivered = False
        self.text: list[str] = []
        self.tool_index: dict[int, int] = {}  # content block index -> tool ordinal
        self.schema_blocks: set[int] = set()

    def apply(self, kind: Any, data: dict[str, Any], schema_tool: str | None, provider: str) -> ChatChunk | None:
        if kind == "message_start":
            message = data.get("message") or {}
            self.id = message.get("id")
            self.model = message.get("model") or self.model
            self.usage = anthropic_usage(message.get("usage"))
            return None
        if kind == "content_block_start":
            block = data.get("content_block") or {}
            index = int(data.get("index", 0))
            if block.get("type") == "tool_use":
                if block.get("name") == schema_tool:
                    self.schema_blocks.add(index)
                    return None
                ordinal = len(self.tool_index)
                self.tool_index[index] = ordinal
                delta = ToolCallDelta(index=ordinal, id=block.get("id"), name=block.get("name"))
                return ChatChunk(tool_calls=[delta], model=self.model, provider=provider, id=self.id)
            text = block.get("text") or ""
            return self._text(text, provider) if text else None
        if kind == "content_block_delta":
            index = int(data.get("index", 0))
            change = data.get("delta") or {}
            if change.get("type") == "text_delta":
                return self._text(change.get("text") or "", provider)
            if change.get("type") == "input_json_delta":
                piece = change.get("partial_json") or ""
                if index in self.schema_blocks:
                    return self._text(piece, provider)
                if index in self.tool_index and piece:
                    call = ToolCallDelta(index=self.tool_index[index], arguments=piece)
                    return ChatChunk(tool_calls=[call], model=self.model, provider=provider, id=self.id)
            return None
        if kind == "message_delta":
            stop = (data.get("delta") or {}).get("stop_reason")
            if stop:
                self.finish = _STOP.get(stop, stop)
                if self.schema_blocks and self.finish == "tool_calls" and not self.tool_index:
                    self.finish = "stop"
            usage = data.get("usage") or {}
            if "input_tokens" in usage:  # newer API versions repeat the whole usage here
                self.usage = anthropic_usage(usage)
            elif usage.get("output_tokens") is not None:
                self.usage = self.usage.model_copy(update={"output_tokens": int(usage["output_tokens"])})
        return None  # ping, content_block_stop and unknown future events

    def _text(self, text: str, provider: str) -> ChatChunk | None:
        if not text:
            return None
        self.text.append(text)
        return ChatChunk(text=text, model=self.model, provider=provider, id=self.id)
