"""Hugging Face: TGI's native API and the inference API's task endpoints.

* :class:`TGIModel`: ``/generate`` and ``/generate_stream`` of a text-generation-
  inference server (for TGI's OpenAI-compatible ``/v1`` use ``OpenAIModel``).
  Chat messages become one prompt through ``prompt_format`` (TGI's native API
  takes text, not messages).
* :class:`HuggingFaceModel`: the inference API (``router.huggingface.co/hf-inference``)
  or a dedicated Inference Endpoint (``endpoint_url``) for ``feature-extraction``
  (``embed``), ``text-classification``, ``token-classification`` and
  ``summarization`` (``chat`` returns the summary, or the labels/entities as JSON).

A 503 while the model loads carries ``estimated_time``; it becomes ``Overloaded``
with that ``retry_after``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from legato.errors import BadRequest, ModelError
from legato.providers._errors import translate_tgi
from legato.providers._http import HttpModel, Progress, embed_response
from legato.providers._sse import loads
from legato.providers._tokens import estimate_text_tokens, estimate_tokens
from legato.providers._types import ChatChunk, ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, Message, Usage
from legato.providers._validate import validate_embed

__all__ = ["HuggingFaceModel", "TGIModel", "plain_prompt"]

HF_URL = "https://router.huggingface.co/hf-inference"
TASKS = ("feature-extraction", "text-classification", "token-classification", "summarization")
_FINISH = {"eos_token": "stop", "stop_sequence": "stop", "length": "length"}


def plain_prompt(messages: list[Message]) -> str:
    """One user message is sent as is; a conversation as ``Role: text`` lines ending in ``Assistant:``."""
    if len(messages) == 1 and messages[0].role == "user":
        return messages[0].text
    lines = [f"{m.role.capitalize()}: {m.text}" for m in messages]
    return "\n".join([*lines, "Assistant:"])


class _HFBase(HttpModel):
    provider = "huggingface"

    def _translate(self, status: int, body: bytes) -> tuple[type[ModelError], str, str | None, float | None]:
        return translate_tgi(status, body)


class TGIModel(_HFBase):
    """A text-generation-inference server's native API.

    Args:
        base_url: the server, e.g. ``http://127.0.0.1:8080``.
        prompt_format: messages -> prompt text (default :func:`plain_prompt`).
        default_max_tokens: ``max_new_tokens`` when the request has no ``max_tokens``.
    """

    def __init__(
        self,
        model: str = "tgi",
        *,
        base_url: str,
        prompt_format: Callable[[list[Message]], str] = plain_prompt,
        default_max_tokens: int = 512,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, base_url=base_url, **kwargs)
        self.prompt_format = prompt_format
        self.default_max_tokens = default_max_tokens

    def _payload(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        params: dict[str, Any] = {"max_new_tokens": request.max_tokens or self.default_max_tokens, "details": True}
        if request.temperature:
            params["temperature"] = request.temperature
            params["do_sample"] = True
        if request.top_p is not None and request.top_p < 1:
            params["top_p"] = request.top_p
        if request.stop:
            params["stop"] = request.stop
        if request.seed is not None:
            params["seed"] = request.seed
        if request.response_format is not None and request.response_format.type == "json_schema":
            params["grammar"] = {"type": "json", "value": request.response_format.json_schema}
        return {"inputs": self.prompt_format(request.messages), "parameters": params, "stream": stream}

    def _usage(self, request: ChatRequest, details: Any, text: str) -> Usage:
        details = details if isinstance(details, dict) else {}
        out = details.get("generated_tokens")
        inp = details.get("input_length")
        return Usage(
            input_tokens=int(inp) if isinstance(inp, int) else estimate_tokens(request, self.provider),
            output_tokens=int(out) if isinstance(out, int) else estimate_text_tokens(text, self.provider),
        )

    async def chat(self, request: ChatRequest) -> ChatResponse:
        self._check(request)
        started = self._clock()
        data, headers = await self._post("/generate", self._payload(request, stream=False))
        if isinstance(data, list) and data:
            data = data[0]
        if not isinstance(data, dict) or not isinstance(data.get("generated_text"), str):
            raise self._malformed("a generation without generated_text", headers)
        text = data["generated_text"]
        details = data.get("details") or {}
        usage = self._usage(request, details, text)
        response = ChatResponse(
            message=Message(role="assistant", content=text),
            model=self.model,
            provider=self.provider,
            finish_reason=_FINISH.get(str(details.get("finish_reason")), "stop"),
            usage=usage,
            cost=self._cost(self.model, usage),
            latency_s=self._clock() - started,
            request_id=self._request_id(headers),
        )
        return self._finish(response)

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        self._check(request)
        progress = Progress()
        texts: list[str] = []
        final: dict[str, Any] | None = None
        async with self._open_stream("/generate_stream", self._payload(request, stream=True), progress) as (
            response,
            batches,
        ):
            async for batch in batches:
                for event in batch:
                    try:
                        data = loads(event.data)
                    except ValueError:
                        raise self._malformed("a stream event that is not JSON", response.headers) from None
                    if not isinstance(data, dict):
                        raise self._malformed("a stream event that is not an object", response.headers)
                    if "error" in data:
                        cls, message, code, _ = translate_tgi(500, json.dumps(data).encode())
                        raise cls(
                            f"error event in the stream: {message}",
                            provider=self.provider,
                            model=self.model,
                            code=code,
                            retryable=None if not progress.delivered else False,
                        )
                    token = data.get("token") or {}
                    piece = "" if token.get("special") else str(token.get("text") or "")
                    if piece:
                        progress.delivered = True
                        texts.append(piece)
                        yield ChatChunk(text=piece, model=self.model, provider=self.provider)
                    if data.get("generated_text") is not None:
                        final = data
                        break
                else:
                    continue
                break
            else:
                raise self._interrupted(response, "without its final event (generated_text)", progress.delivered)
        assert final is not None
        details = final.get("details") or {}
        usage = self._usage(request, details, "".join(texts))
        chunk = ChatChunk(
            finish_reason=_FINISH.get(str(details.get("finish_reason")), "stop"),
            usage=usage,
            cost=self._cost(self.model, usage),
            model=self.model,
            provider=self.provider,
        )
        yield self._finish_chunk(chunk)


class HuggingFaceModel(_HFBase):
    """A model behind the Hugging Face inference API or an Inference Endpoint.

    Args:
        model: the model id, e.g. ``sentence-transformers/all-MiniLM-L6-v2``.
        task: one of ``feature-extraction``, ``text-classification``,
            ``token-classification``, ``summarization``.
        base_url: the inference API root (default ``https://router.huggingface.co/hf-inference``).
        endpoint_url: a dedicated endpoint; requests go to it directly.
    """

    def __init__(
        self,
        model: str,
        *,
        task: str = "feature-extraction",
        base_url: str | None = None,
        endpoint_url: str | None = None,
        **kwargs: Any,
    ) -> None:
        if task not in TASKS:
            raise BadRequest(f"unknown Hugging Face task {task!r}; known: {', '.join(TASKS)}", provider="huggingface")
        super().__init__(model, base_url=endpoint_url or base_url or HF_URL, **kwargs)
        self.task = task
        self.endpoint_url = endpoint_url

    def _route(self, task: str) -> str:
        return "" if self.endpoint_url else f"/models/{self.model}/pipeline/{task}"

    async def run_task(self, task: str, inputs: str | list[str], parameters: dict[str, Any] | None = None) -> Any:
        """Call a task endpoint and return its decoded JSON."""
        payload: dict[str, Any] = {"inputs": inputs}
        if parameters:
            payload["parameters"] = parameters
        data, _ = await self._post(self._route(task), payload)
        return data

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        validate_embed(request, provider=self.provider, model=self.model)
        started = self._clock()
        data = await self.run_task("feature-extraction", list(request.inputs))
        try:
            vectors = [_pool(v) for v in data]
        except (TypeError, ValueError):
            raise self._malformed("feature-extraction output it could not read") from None
        if len(vectors) != len(request.inputs):
            raise self._malformed(f"{len(vectors)} vectors for {len(request.inputs)} inputs")
        usage = Usage(input_tokens=sum(estimate_text_tokens(t, self.provider) for t in request.inputs))
        cost = self._cost(self.model, usage)
        return embed_response(
            vectors=vectors,
            model=self.model,
            provider=self.provider,
            usage=usage,
            cost=cost,
            latency_s=self._clock() - started,
        )

    async def chat(self, request: ChatRequest) -> ChatResponse:
        self._check(request)
        if self.task == "feature-extraction":
            raise BadRequest(f"{self.model!r} is a feature-extraction model: use embed()", provider=self.provider)
        started = self._clock()
        text = request.messages[-1].text
        data = await self.run_task(self.task, text)
        if self.task == "summarization":
            try:
                content = str((data[0] if isinstance(data, list) else data)["summary_text"])
            except (KeyError, IndexError, TypeError):
                raise self._malformed("a summary without summary_text") from None
        else:
            content = json.dumps(data, ensure_ascii=False)
        usage = Usage(input_tokens=estimate_tokens(request, self.provider), output_tokens=estimate_text_tokens(content))
        response = ChatResponse(
            message=Message(role="assistant", content=content),
            model=self.model,
            provider=self.provider,
            finish_reason="stop",
            usage=usage,
            cost=self._cost(self.model, usage),
            latency_s=self._clock() - started,
        )
        return self._finish(response)

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        response = await self.chat(request)
        yield ChatChunk(text=response.text, model=self.model, provider=self.provider)
        yield ChatChunk(
            finish_reason="stop", usage=response.usage, cost=response.cost, model=self.model, provider=self.provider
        )


def _pool(value: Any) -> list[float]:
    """A sentence vector from feature-extraction output (token vectors are mean-pooled)."""
    if value and isinstance(value[0], int | float):
        return [float(x) for x in value]
    rows = value[0] if value and value[0] and isinstance(value[0][0], list) else value
    width = len(rows[0])
    return [sum(float(r[i]) for r in rows) / len(rows) for i in range(width)]
