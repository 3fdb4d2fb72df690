"""Request and response types shared by every provider, and the ``Model`` protocol.

The types are modelled on the OpenAI chat format (the lingua franca of LLM APIs)
and are our own: adapters translate them to and from each wire format. They are
pydantic models so that user input is validated at the edge with messages that
name the field; ``ChatRequest`` rejects an invalid request before any network call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "ChatChunk",
    "ChatRequest",
    "ChatResponse",
    "ContentPart",
    "EmbedRequest",
    "EmbedResponse",
    "ImagePart",
    "Message",
    "Model",
    "ModelWrapper",
    "ResponseFormat",
    "TextPart",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "Usage",
    "close_stream",
    "closing_stream",
]

Role = Literal["system", "user", "assistant", "tool"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TextPart(_Frozen):
    type: Literal["text"] = "text"
    text: str


class ImagePart(_Frozen):
    """An image by URL (``https://...``) or inline (``data:image/png;base64,...``)."""

    type: Literal["image"] = "image"
    url: str
    detail: Literal["auto", "low", "high"] | None = None

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        if not (v.startswith(("http://", "https://", "data:"))):
            raise ValueError("image url must be http(s):// or a data: URL")
        return v


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class ToolCall(_Frozen):
    """A complete tool call requested by the model. ``arguments`` is the JSON text."""

    id: str
    name: str
    arguments: str = "{}"


class Message(_Frozen):
    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Message:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a 'tool' message needs tool_call_id")
        if self.content is None and not self.tool_calls:
            raise ValueError(f"a {self.role!r} message needs content or tool_calls")
        return self

    @property
    def text(self) -> str:
        """The message's text, with the text parts joined."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content if isinstance(p, TextPart))


class Tool(_Frozen):
    """A function the model may call. ``parameters`` is a JSON schema object."""

    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None


class ResponseFormat(_Frozen):
    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: dict[str, Any] | None = None  # the JSON schema itself
    name: str = "response"
    strict: bool | None = None

    @model_validator(mode="after")
    def _check(self) -> ResponseFormat:
        if self.type == "json_schema" and not self.json_schema:
            raise ValueError("response_format json_schema needs a JSON schema object")
        return self


class ChatRequest(_Frozen):
    """One chat call. ``model`` may be left empty when the Model object fixes it.

    ``metadata`` travels with the request for routing, caching and logging
    (tenant, tags, idempotency key); it is never sent to a provider.
    """

    messages: list[Message] = Field(min_length=1)
    model: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    stop: list[str] | None = None
    seed: int | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["auto", "none", "required"] | str | None = None
    response_format: ResponseFormat | None = None
    user: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


class EmbedRequest(_Frozen):
    inputs: list[str] = Field(min_length=1)
    model: str | None = None
    dimensions: int | None = Field(default=None, ge=1)
    metadata: dict[str, Any] = Field(default_factory=dict)


class Usage(_Frozen):
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0  # part of input_tokens served from a prompt cache
    cache_write_tokens: int = 0  # part of input_tokens written to a prompt cache
    reasoning_tokens: int = 0  # part of output_tokens spent on hidden reasoning

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cached_input_tokens=self.cached_input_tokens + other.cached_input_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
        )


class ChatResponse(_Frozen):
    """A finished chat call.

    ``cost`` is in USD, computed from ``usage`` and the pricing table; ``None`` means
    the model's price is unknown (never a silent 0). ``model`` is the model that
    actually answered, ``provider`` its provider, ``tier`` the routing tier or
    deployment that answered, ``degraded`` whether a fallback of lower quality did.
    """

    message: Message
    model: str
    provider: str
    id: str | None = None
    finish_reason: str | None = None
    usage: Usage = Usage()
    cost: float | None = None
    latency_s: float | None = None
    request_id: str | None = None
    cached: bool = False
    degraded: bool = False
    tier: str | None = None

    @property
    def text(self) -> str:
        return self.message.text


class ToolCallDelta(_Frozen):
    """A fragment of a streamed tool call. ``index`` identifies the call; ``id`` and
    ``name`` arrive on the first fragment, ``arguments`` pieces are concatenated."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


class ChatChunk(_Frozen):
    """One streamed piece. The last chunk carries ``finish_reason``, ``usage`` and ``cost``."""

    text: str = ""
    tool_calls: list[ToolCallDelta] | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    cost: float | None = None
    model: str | None = None
    provider: str | None = None
    id: str | None = None


class EmbedResponse(_Frozen):
    vectors: list[list[float]]
    model: str
    provider: str
    usage: Usage = Usage()
    cost: float | None = None
    latency_s: float | None = None
    cached: bool = False


@runtime_checkable
class Model(Protocol):
    """What every provider adapter, wrapper and router implements.

    ``chat`` returns one response; ``stream`` yields chunks and raises
    ``StreamInterrupted`` (never ends cleanly) when the stream is cut; ``embed``
    embeds a batch of texts; ``aclose`` releases connections. Every failure is a
    :class:`legato.errors.ModelError`. A model that cannot do one of the
    operations raises ``BadRequest`` for it.
    """

    name: str

    async def chat(self, request: ChatRequest) -> ChatResponse: ...

    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]: ...

    async def embed(self, request: EmbedRequest) -> EmbedResponse: ...

    async def aclose(self) -> None: ...


class ModelWrapper:
    """Base for wrappers (retry, breaker, cache, ...): a Model around a Model.

    Subclasses override what they change; everything else passes through.
    """

    def __init__(self, inner: Model, *, name: str | None = None) -> None:
        self.inner = inner
        self.name = name or inner.name

    async def chat(self, request: ChatRequest) -> ChatResponse:
        return await self.inner.chat(request)

    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        return self.inner.stream(request)

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        return await self.inner.embed(request)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"


async def close_stream(stream: AsyncIterator[ChatChunk]) -> None:
    """Close a model's stream now (its HTTP response, its inner streams), if it can be closed.

    A stream left unread is otherwise closed by Python's async-generator finalizer,
    at some later point and outside the caller's task and cancel scopes."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


@asynccontextmanager
async def closing_stream(stream: AsyncIterator[ChatChunk]) -> AsyncIterator[AsyncIterator[ChatChunk]]:
    """``async with closing_stream(model.stream(request)) as chunks:`` reads ``chunks`` and
    closes the stream on the way out, however the block ends (its end, an error, a
    consumer that stops early). :func:`contextlib.aclosing` for an ``AsyncIterator``,
    which need not declare ``aclose``."""
    try:
        yield stream
    finally:
        await close_stream(stream)
