"""OpenAI Chat Completions and Embeddings, any OpenAI-compatible server, Azure OpenAI.

``OpenAIModel(model, base_url=...)`` talks to api.openai.com or to any server that
speaks the same API (vLLM, Ollama ``/v1``, llama.cpp server, LM Studio, TGI
``/v1``); ``AzureOpenAIModel`` uses Azure's deployment paths, ``api-version`` and
``api-key`` header. Streams ask for ``stream_options.include_usage`` so that the
last chunk carries the real usage and cost; a server that ignores it gets usage
estimated from the text (flagged in the log).
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import AsyncIterator
from typing import Any

from legato.errors import ModelError
from legato.providers._errors import translate_openai
from legato.providers._http import HttpModel, Progress, embed_response
from legato.providers._sse import loads
from legato.providers._tokens import estimate_text_tokens, estimate_tokens
from legato.providers._types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbedRequest,
    EmbedResponse,
    ImagePart,
    Message,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from legato.providers._validate import validate_embed

__all__ = ["AzureOpenAIModel", "OpenAIModel"]

OPENAI_URL = "https://api.openai.com/v1"


def _content(message: Message) -> Any:
    content = message.content
    if content is None or isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, ImagePart):
            image: dict[str, Any] = {"url": part.url}
            if part.detail:
                image["detail"] = part.detail
            parts.append({"type": "image_url", "image_url": image})
        else:
            parts.append({"type": "text", "text": part.text})
    return parts


def openai_messages(messages: list[Message]) -> list[dict[str, Any]]:
    out = []
    for m in messages:
        item: dict[str, Any] = {"role": m.role, "content": _content(m)}
        if m.name:
            item["name"] = m.name
        if m.tool_calls:
            item["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in m.tool_calls
            ]
        if m.tool_call_id:
            item["tool_call_id"] = m.tool_call_id
        out.append(item)
    return out


def openai_payload(request: ChatRequest, model: str, max_tokens_param: str = "max_tokens") -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": openai_messages(request.messages)}
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.max_tokens is not None:
        body[max_tokens_param] = request.max_tokens
    if request.stop:
        body["stop"] = request.stop
    if request.seed is not None:
        body["seed"] = request.seed
    if request.user:
        body["user"] = request.user
    if request.tools:
        tools = []
        for t in request.tools:
            fn: dict[str, Any] = {"name": t.name, "parameters": t.parameters}
            if t.description:
                fn["description"] = t.description
            if t.strict is not None:
                fn["strict"] = t.strict
            tools.append({"type": "function", "function": fn})
        body["tools"] = tools
    if request.tool_choice is not None:
        choice = request.tool_choice
        body["tool_choice"] = (
            choice if choice in ("auto", "none", "required") else {"type": "function", "function": {"name": choice}}
        )
    rf = request.response_format
    if rf is not None and rf.type != "text":
        if rf.type == "json_schema":
            spec: dict[str, Any] = {"name": rf.name, "schema": rf.json_schema}
            if rf.strict is not None:
                spec["strict"] = rf.strict
            body["response_format"] = {"type": "json_schema", "json_schema": spec}
        else:
            body["response_format"] = {"type": "json_object"}
    return body


def openai_usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    prompt = raw.get("prompt_tokens_details") or {}
    completion = raw.get("completion_tokens_details") or {}
    return Usage(
        input_tokens=int(raw.get("prompt_tokens") or 0),
        output_tokens=int(raw.get("completion_tokens") or 0),
        cached_input_tokens=int(prompt.get("cached_tokens") or 0),
        reasoning_tokens=int(completion.get("reasoning_tokens") or 0),
    )


class OpenAIModel(HttpModel):
    """OpenAI (or an OpenAI-compatible server) through Chat Completions and Embeddings.

    Args:
        model: the model id sent to the server (``gpt-4o-mini``, ``llama3.1:8b``...).
        base_url: ``https://api.openai.com/v1`` by default; any OpenAI-compatible ``/v1``.
        api_key: sent as ``Authorization: Bearer``; None sends no key (local servers).
        provider: the name used in errors, the ledger and price lookups
            (``openai`` by default; e.g. ``vllm`` or ``ollama`` for local servers).
        organization, project: OpenAI account headers.
        max_tokens_param: ``max_completion_tokens`` for api.openai.com (what o-series
            models require), ``max_tokens`` for compatible servers.
        stream_usage: send ``stream_options.include_usage`` (turn off for a server
            that rejects it; usage is then estimated from the text).
        See :class:`~legato.providers.HttpModel` for transport settings.
    """

    provider = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        provider: str | None = None,
        organization: str | None = None,
        project: str | None = None,
        max_tokens_param: str | None = None,
        stream_usage: bool = True,
        **kwargs: Any,
    ) -> None:
        headers = dict(kwargs.pop("headers", None) or {})
        if organization:
            headers["openai-organization"] = organization
        if project:
            headers["openai-project"] = project
        super().__init__(model, base_url=base_url or OPENAI_URL, api_key=api_key, headers=headers, **kwargs)
        if provider:
            self.provider = provider
        official = self.base_url == OPENAI_URL
        self.max_tokens_param = max_tokens_param or ("max_completion_tokens" if official else "max_tokens")
        self.stream_usage = stream_usage

    # Paths and query differ for Azure.
    def _path(self, operation: str) -> str:
        return f"/{operation}"

    def _translate(self, status: int, body: bytes) -> tuple[type[ModelError], str, str | None, float | None]:
        cls, message, code = translate_openai(status, body)
        return cls, message, code, None

    def _payload(self, request: ChatRequest) -> dict[str, Any]:
        return openai_payload(request, request.model or self.model, self.max_tokens_param)

    # ------------------------------------------------------------------ chat

    async def chat(self, request: ChatRequest) -> ChatResponse:
        self._check(request)
        started = self._clock()
        data, headers = await self._post(self._path("chat/completions"), self._payload(request))
        try:
            choice = data["choices"][0]
            raw = choice["message"]
        except (KeyError, IndexError, TypeError):
            raise self._malformed("a completion without choices", headers) from None
        calls = [
            ToolCall(id=c["id"], name=c["function"]["name"], arguments=c["function"].get("arguments") or "{}")
            for c in raw.get("tool_calls") or ()
        ]
        content = raw.get("content")
        if content is None and not calls:
            content = raw.get("refusal") or ""
        model = data.get("model") or request.model or self.model
        usage = openai_usage(data.get("usage")) or self._estimate(request, content or "")
        response = ChatResponse(
            message=Message(role="assistant", content=content, tool_calls=calls or None),
            model=model,
            provider=self.provider,
            id=data.get("id"),
            finish_reason=choice.get("finish_reason"),
            usage=usage,
            cost=self._cost(model, usage),
            latency_s=self._clock() - started,
            request_id=self._request_id(headers),
        )
        return self._finish(response)

    def _estimate(self, request: ChatRequest, text: str) -> Usage:
        return Usage(
            input_tokens=estimate_tokens(request, self.provider),
            output_tokens=estimate_text_tokens(text, self.provider),
        )

    # ------------------------------------------------------------------ stream

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        self._check(request)
        payload = self._payload(request)
        payload["stream"] = True
        if self.stream_usage:
            payload["stream_options"] = {"include_usage": True}
        state = _StreamState(request.model or self.model, self.provider)
        async with self._open_stream(self._path("chat/completions"), payload, state) as (response, batches):
            async for batch in batches:
                for event in batch:
                    if event.data == "[DONE]":
                        break
                    chunk = state.apply(self._event(event.data, response.headers, state.delivered))
                    if chunk is not None:
                        yield chunk
                else:
                    continue
                break
            else:
                raise self._interrupted(response, "without its [DONE] marker", state.delivered)
        usage = state.usage or self._estimate(request, "".join(state.text))
        final = ChatChunk(
            finish_reason=state.finish or "stop",
            usage=usage,
            cost=self._cost(state.model, usage),
            model=state.model,
            provider=self.provider,
            id=state.id,
        )
        yield self._finish_chunk(final)

    def _event(self, data: str, headers: Any, delivered: bool) -> dict[str, Any]:
        """One stream event's JSON object; a malformed one or an error event raises."""
        try:
            value = loads(data)
        except ValueError:
            raise self._malformed("a stream event that is not JSON", headers, retryable=not delivered) from None
        if not isinstance(value, dict):
            raise self._malformed("a stream event that is not an object", headers)
        if "error" in value:
            self._stream_error(value, headers, delivered)
        return value

    def _stream_error(self, data: dict[str, Any], headers: Any, delivered: bool) -> None:
        body = json.dumps({"error": data["error"]}).encode()
        err = data["error"] if isinstance(data["error"], dict) else {}
        status = {"server_error": 500, "rate_limit_exceeded": 429}.get(str(err.get("type") or err.get("code")), 500)
        cls, message, code = translate_openai(status, body)
        raise cls(
            f"error event in the stream: {message}",
            provider=self.provider,
            model=self.model,
            request_id=self._request_id(headers),
            code=code,
            retryable=None if not delivered else False,
        )

    # ------------------------------------------------------------------ embed

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        validate_embed(request, provider=self.provider, model=self.model)
        started = self._clock()
        payload: dict[str, Any] = {"model": request.model or self.model, "input": request.inputs}
        payload["encoding_format"] = "base64"
        if request.dimensions is not None:
            payload["dimensions"] = request.dimensions
        data, headers = await self._post(self._path("embeddings"), payload)
        try:
            items = sorted(data["data"], key=lambda d: d.get("index", 0))
            vectors = [_vector(item["embedding"]) for item in items]
        except (KeyError, TypeError, ValueError, struct.error):
            raise self._malformed("embeddings it could not decode", headers) from None
        if len(vectors) != len(request.inputs):
            raise self._malformed(f"{len(vectors)} embeddings for {len(request.inputs)} inputs", headers)
        raw_usage = data.get("usage") or {}
        tokens = int(raw_usage.get("prompt_tokens") or 0) or sum(
            estimate_text_tokens(t, self.provider) for t in request.inputs
        )
        usage = Usage(input_tokens=tokens)
        model = data.get("model") or request.model or self.model
        cost = self._cost(model, usage)
        return embed_response(
            vectors=vectors,
            model=model,
            provider=self.provider,
            usage=usage,
            cost=cost,
            latency_s=self._clock() - started,
        )


def _vector(raw: Any) -> list[float]:
    if isinstance(raw, str):  # base64 little-endian float32, what the API sends for encoding_format=base64
        packed = base64.b64decode(raw)
        return list(struct.unpack(f"<{len(packed) // 4}f", packed))
    return [float(x) for x in raw]


class AzureOpenAIModel(OpenAIModel):
    """Azure OpenAI: ``{endpoint}/openai/deployments/{deployment}/...?api-version=...``.

    ``model`` is the deployment name; the key goes in the ``api-key`` header (or pass
    ``azure_ad_token`` for Entra ID bearer tokens).
    """

    provider = "azure"

    def __init__(
        self,
        deployment: str,
        *,
        endpoint: str,
        api_version: str = "2024-10-21",
        api_key: str | None = None,
        azure_ad_token: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.api_version = api_version
        self.azure_ad_token = azure_ad_token
        kwargs.setdefault("max_tokens_param", "max_tokens")
        super().__init__(deployment, base_url=endpoint, api_key=api_key, **kwargs)

    def _auth_headers(self) -> dict[str, str]:
        if self.azure_ad_token:
            return {"authorization": f"Bearer {self.azure_ad_token}"}
        return {"api-key": self.api_key} if self.api_key else {}

    def _path(self, operation: str) -> str:
        return f"/openai/deployments/{self.model}/{operation}?api-version={self.api_version}"


class _StreamState(Progress):
    """What a Chat Completions stream has said so far."""

    def __init__(self, model: str, provider: str) -> None:
        super().__init__()
        self.model = model
        self.provider = provider
        self.id: str | None = None
        self.usage: Usage | None = None
        self.finish: str | None = None
        self.text: list[str] = []

    def apply(self, data: dict[str, Any]) -> ChatChunk | None:
        """Note an event; its content as a chunk (``None`` when it has none)."""
        self.id = data.get("id") or self.id
        self.model = data.get("model") or self.model
        raw_usage = data.get("usage")
        if raw_usage is not None:
            self.usage = openai_usage(raw_usage) or self.usage
        text = ""
        calls: list[ToolCallDelta] = []
        for choice in data.get("choices") or ():
            delta = choice.get("delta") or {}
            self.finish = choice.get("finish_reason") or self.finish
            text += delta.get("content") or ""
            for c in delta.get("tool_calls") or ():
                fn = c.get("function") or {}
                calls.append(
                    ToolCallDelta(
                        index=c.get("index", 0),
                        id=c.get("id"),
                        name=fn.get("name"),
                        arguments=fn.get("arguments") or "",
                    )
                )
        if not (text or calls):
            return None
        self.delivered = True
        self.text.append(text)
        return ChatChunk(text=text, tool_calls=calls or None, model=self.model, provider=self.provider, id=self.id)
