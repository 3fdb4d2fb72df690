"""One model interface over every provider.

See :class:`Model` for the protocol; adapters live in private modules and are
constructed through :func:`legato.providers.create` or named models in
``legato.yaml``.
"""

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
)

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
]
