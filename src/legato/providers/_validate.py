"""Checks that run before any network call.

``ChatRequest`` validates its fields when it is built; these checks repeat the
cheap structural ones (a request built with ``model_construct`` or mutated skips
pydantic) and add what pydantic cannot see: that a JSON schema is a valid JSON
Schema, that ``tool_choice`` names a declared tool, and per-provider limits. A
failure is :class:`~legato.errors.BadRequest`, so it is never retried and never
reaches the provider.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from legato.errors import BadRequest
from legato.providers._types import ChatRequest, EmbedRequest

__all__ = ["check_json_schema", "validate_chat", "validate_embed"]

_ROLES = frozenset({"system", "user", "assistant", "tool"})
_MAX_TEMPERATURE = {"anthropic": 1.0}


@lru_cache(maxsize=256)
def _schema_problem(text: str) -> str | None:
    import importlib

    validators: Any = importlib.import_module("jsonschema.validators")
    errors: Any = importlib.import_module("jsonschema.exceptions")
    schema = json.loads(text)
    try:
        validators.validator_for(schema).check_schema(schema)
    except errors.SchemaError as exc:
        return str(exc.message)
    return None


def check_json_schema(schema: Any, what: str) -> None:
    """Raise BadRequest unless ``schema`` is a JSON-serialisable, valid JSON Schema object."""
    if not isinstance(schema, dict):
        raise BadRequest(f"{what} must be a JSON schema object, got {type(schema).__name__}")
    try:
        text = json.dumps(schema, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"{what} is not JSON: {exc}") from None
    problem = _schema_problem(text)
    if problem is not None:
        raise BadRequest(f"{what} is not a valid JSON schema: {problem}")


def validate_chat(request: ChatRequest, *, provider: str, model: str | None = None) -> None:
    def bad(message: str) -> BadRequest:
        return BadRequest(f"invalid request: {message}", provider=provider, model=model)

    if not request.messages:
        raise bad("messages must not be empty")
    for i, message in enumerate(request.messages):
        if message.role not in _ROLES:
            raise bad(f"messages[{i}].role {message.role!r} is not one of {', '.join(sorted(_ROLES))}")
        if message.content is None and not message.tool_calls:
            raise bad(f"messages[{i}] has neither content nor tool_calls")
    if request.max_tokens is not None and request.max_tokens < 1:
        raise bad(f"max_tokens must be at least 1, got {request.max_tokens}")
    limit = _MAX_TEMPERATURE.get(provider, 2.0)
    if request.temperature is not None and not 0 <= request.temperature <= limit:
        raise bad(f"temperature must be between 0 and {limit:g} for {provider}, got {request.temperature}")
    rf = request.response_format
    if rf is not None and rf.type == "json_schema":
        try:
            check_json_schema(rf.json_schema, "response_format.json_schema")
        except BadRequest as exc:
            raise bad(exc.message) from None
    names = set()
    for tool in request.tools or ():
        names.add(tool.name)
        try:
            check_json_schema(tool.parameters, f"tools[{tool.name}].parameters")
        except BadRequest as exc:
            raise bad(exc.message) from None
    choice = request.tool_choice
    if choice not in (None, "auto", "none", "required") and choice not in names:
        raise bad(f"tool_choice {choice!r} names no tool in tools ({', '.join(sorted(names)) or 'none'})")


def validate_embed(request: EmbedRequest, *, provider: str, model: str | None = None) -> None:
    if not request.inputs:
        raise BadRequest("invalid request: inputs must not be empty", provider=provider, model=model)
    if any(not isinstance(t, str) for t in request.inputs):
        raise BadRequest("invalid request: every input must be a string", provider=provider, model=model)
