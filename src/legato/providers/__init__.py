"""One model interface over every provider.

:class:`Model` is the protocol (``chat``, ``stream``, ``embed``, ``aclose``); the
request/response types are ours. Adapters: :class:`OpenAIModel` (and any
OpenAI-compatible server), :class:`AzureOpenAIModel`, :class:`AnthropicModel`,
:class:`TGIModel`, :class:`HuggingFaceModel`, :class:`LocalModel` and
:class:`PythonModel`. Build one in code with :func:`create` or by name from
``legato.yaml`` with ``legato.models.get``.

The adapters, pricing and HTTP machinery are imported lazily on first use, so
``import legato.providers`` costs only the types.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from legato.providers._types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    ContentPart,
    EmbedRequest,
    EmbedResponse,
    ImagePart,
    Message,
    Model,
    ModelWrapper,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCall,
    ToolCallDelta,
    Usage,
    close_stream,
    closing_stream,
)

_LAZY: dict[str, str] = {
    "AnthropicModel": "legato.providers._anthropic",
    "AzureOpenAIModel": "legato.providers._openai",
    "OpenAIModel": "legato.providers._openai",
    "HuggingFaceModel": "legato.providers._huggingface",
    "TGIModel": "legato.providers._huggingface",
    "LocalModel": "legato.providers._local",
    "PythonModel": "legato.providers._python",
    "HttpModel": "legato.providers._http",
    "HttpOptions": "legato.providers._http",
    "record_call": "legato.providers._http",
    "ModelConfig": "legato.providers._factory",
    "build": "legato.providers._factory",
    "create": "legato.providers._factory",
    "provider_names": "legato.providers._factory",
    "register_provider": "legato.providers._factory",
    "Price": "legato.providers._pricing",
    "PricingTable": "legato.providers._pricing",
    "cost_of": "legato.providers._pricing",
    "default_pricing": "legato.providers._pricing",
    "estimate_tokens": "legato.providers._tokens",
    "estimate_text_tokens": "legato.providers._tokens",
    "estimate_output_tokens": "legato.providers._tokens",
    "StreamAssembler": "legato.providers._assemble",
    "collect": "legato.providers._assemble",
    "SSEDecoder": "legato.providers._sse",
    "ServerSentEvent": "legato.providers._sse",
    "parse_retry_after": "legato.providers._errors",
    "validate_chat": "legato.providers._validate",
    "check_json_schema": "legato.providers._validate",
}

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
    *_LAZY,
]

if TYPE_CHECKING:
    from legato.providers._anthropic import AnthropicModel as AnthropicModel
    from legato.providers._assemble import StreamAssembler as StreamAssembler
    from legato.providers._assemble import collect as collect
    from legato.providers._errors import parse_retry_after as parse_retry_after
    from legato.providers._factory import ModelConfig as ModelConfig
    from legato.providers._factory import build as build
    from legato.providers._factory import create as create
    from legato.providers._factory import provider_names as provider_names
    from legato.providers._factory import register_provider as register_provider
    from legato.providers._http import HttpModel as HttpModel
    from legato.providers._http import HttpOptions as HttpOptions
    from legato.providers._http import record_call as record_call
    from legato.providers._huggingface import HuggingFaceModel as HuggingFaceModel
    from legato.providers._huggingface import TGIModel as TGIModel
    from legato.providers._local import LocalModel as LocalModel
    from legato.providers._openai import AzureOpenAIModel as AzureOpenAIModel
    from legato.providers._openai import OpenAIModel as OpenAIModel
    from legato.providers._pricing import Price as Price
    from legato.providers._pricing import PricingTable as PricingTable
    from legato.providers._pricing import cost_of as cost_of
    from legato.providers._pricing import default_pricing as default_pricing
    from legato.providers._python import PythonModel as PythonModel
    from legato.providers._sse import ServerSentEvent as ServerSentEvent
    from legato.providers._sse import SSEDecoder as SSEDecoder
    from legato.providers._tokens import estimate_output_tokens as estimate_output_tokens
    from legato.providers._tokens import estimate_text_tokens as estimate_text_tokens
    from legato.providers._tokens import estimate_tokens as estimate_tokens
    from legato.providers._validate import check_json_schema as check_json_schema
    from legato.providers._validate import validate_chat as validate_chat


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'legato.providers' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
