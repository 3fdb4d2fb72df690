"""Cache keys: a hash of the canonical form of a request, scoped by namespace and tenant.

Two requests get the same key exactly when a provider would treat them the same:

* ``metadata`` never enters the key (it is never sent to a provider), except the
  tenant (``metadata["tenant"]``), which scopes the key like the namespace does;
* ``user`` never enters the key (providers use it for abuse monitoring only);
* parameters left at their default and parameters set to ``None`` are the same;
* a ``response_format`` of type ``text`` is the same as none;
* message content made of one text part is the same as that text;
* ``stop`` sequences are a set (order and duplicates do not matter);
* JSON objects (tool parameters, JSON schemas) are compared with sorted keys.

Everything else that can change the output (model, messages and their order, tools
and their order, tool choice, sampling parameters, seed, max tokens, response format)
is part of the key. The key format is versioned (``v1``) so that a change of these
rules never reads old entries.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from legato.providers import ChatRequest, EmbedRequest

__all__ = ["canonical_chat", "canonical_embed", "chat_key", "embed_key", "scope_of"]

_KEY_VERSION = "v1"


def scope_of(namespace: str, metadata: dict[str, Any]) -> str:
    """``namespace`` plus the request's tenant, when it has one."""
    tenant = metadata.get("tenant")
    if tenant is None:
        return namespace
    return f"{namespace}/tenant={tenant}"


def canonical_chat(request: ChatRequest, model: str) -> dict[str, Any]:
    """The parts of ``request`` that can change the answer, in a normal form."""
    data = request.model_dump(mode="json", exclude={"metadata", "user"}, exclude_none=True, exclude_defaults=True)
    data["model"] = request.model or model
    data["messages"] = [_canonical_message(m) for m in data["messages"]]
    if "stop" in data:
        data["stop"] = sorted(set(data["stop"]))
        if not data["stop"]:
            del data["stop"]
    fmt = data.get("response_format")
    if fmt is not None and fmt.get("type", "text") == "text":
        del data["response_format"]
    return data


def canonical_embed(request: EmbedRequest, model: str) -> dict[str, Any]:
    data = request.model_dump(mode="json", exclude={"metadata"}, exclude_none=True, exclude_defaults=True)
    data["model"] = request.model or model
    return data


def _canonical_message(message: dict[str, Any]) -> dict[str, Any]:
    content = message.get("content")
    if isinstance(content, list) and len(content) == 1 and content[0].get("type", "text") == "text":
        message = {**message, "content": content[0]["text"]}
    return message


def _digest(kind: str, scope: str, canonical: dict[str, Any]) -> str:
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(text.encode()).hexdigest()
    # The scope is hashed together with the body: no two scopes can ever share a key.
    scoped = hashlib.sha256(f"{scope}\x00{digest}".encode()).hexdigest()
    return f"{_KEY_VERSION}:{kind}:{scoped}"


def chat_key(request: ChatRequest, *, model: str, namespace: str = "default", stream: bool = False) -> str:
    """The cache key of a chat request, for the model that will answer it.

    Streamed and unstreamed answers are kept apart (``stream=True``): a stream is
    replayed chunk for chunk, which a stored single response cannot do.
    """
    kind = "stream" if stream else "chat"
    return _digest(kind, scope_of(namespace, request.metadata), canonical_chat(request, model))


def embed_key(request: EmbedRequest, *, model: str, namespace: str = "default") -> str:
    """The cache key of an embedding request."""
    return _digest("embed", scope_of(namespace, request.metadata), canonical_embed(request, model))
