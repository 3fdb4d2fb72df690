"""How values (inputs, step outputs, metadata) are written to the store.

JSON where the value is JSON (readable with any SQL client, portable between
SQLite and PostgreSQL). A resumed run must see exactly what the first attempt
produced, so values JSON cannot represent faithfully are tagged instead of being
coerced: tuples keep their type, bytes are base64, and any other object (a
pydantic model, a dataclass, a set...) is pickled. The store is trusted data:
only legato writes it, as pickle-based caches and task queues do.

Objects whose class cannot be pickled by reference (a class from a pipeline's
``./steps.py``, which is not an importable module) are pickled *by value* with
cloudpickle, so any process can read them back: ``legato runs show`` as well as a
resume. A value that neither can serialise (a lock, a socket, an open file, a
generator) raises :class:`NotSerialisable`, which the checkpointer turns into a
failure of the step that returned it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import pickle
from dataclasses import dataclass
from typing import Any

import cloudpickle

from legato.store._crypto import unseal

__all__ = ["Encoded", "NotSerialisable", "decode", "encode", "request_hash"]

_TAG = "__legato__"
_PLAIN = (str, int, float, bool, type(None))


def _pack(value: Any) -> Any:
    if type(value) in _PLAIN:  # exact types: an IntEnum or a str subclass would not round-trip
        return value
    if type(value) is list:
        return [_pack(v) for v in value]
    if type(value) is dict and _TAG not in value and all(type(k) is str for k in value):
        return {k: _pack(v) for k, v in value.items()}
    if type(value) is tuple:
        return {_TAG: "tuple", "items": [_pack(v) for v in value]}
    if type(value) is bytes:
        return {_TAG: "bytes", "b64": base64.b64encode(value).decode("ascii")}
    return {_TAG: "pickle", "b64": base64.b64encode(_pickle(value)).decode("ascii")}


class NotSerialisable(TypeError):
    """A value that neither JSON, pickle nor cloudpickle can write."""


# What pickling an unpicklable value raises: PicklingError, TypeError ("cannot pickle
# '_thread.lock' object"), AttributeError (local objects), RecursionError (cycles).
_PICKLE_ERRORS = (pickle.PicklingError, TypeError, AttributeError, RecursionError, ValueError)


def _pickle(value: Any) -> bytes:
    try:
        return pickle.dumps(value, protocol=5)
    except _PICKLE_ERRORS:
        pass
    try:  # classes and functions that are not importable by name travel by value
        return cloudpickle.dumps(value, protocol=5)  # type: ignore[no-any-return]
    except _PICKLE_ERRORS as exc:
        raise NotSerialisable(str(exc) or type(exc).__name__) from exc


@dataclass(frozen=True, slots=True)
class Encoded:
    """A value already turned into stored text by :func:`encode` (written as is)."""

    text: str


def _unpack(value: Any) -> Any:
    if type(value) is list:
        return [_unpack(v) for v in value]
    if type(value) is dict:
        tag = value.get(_TAG)
        if tag is None:
            return {k: _unpack(v) for k, v in value.items()}
        if tag == "tuple":
            return tuple(_unpack(v) for v in value["items"])
        if tag == "bytes":
            return base64.b64decode(value["b64"])
        if tag == "pickle":
            return pickle.loads(base64.b64decode(value["b64"]))  # noqa: S301 - the store is trusted
        raise ValueError(f"unknown stored value tag {tag!r}")
    return value


def encode(value: Any) -> str:
    """Serialise ``value`` to text that :func:`decode` turns back into an equal value.
    Raises :class:`NotSerialisable` for a value that cannot be stored."""
    if type(value) is Encoded:
        return value.text
    return json.dumps(_pack(value), ensure_ascii=False, separators=(",", ":"))


def decode(text: str | None) -> Any:
    """The value :func:`encode` wrote; sealed text (encryption at rest) is opened first."""
    return None if text is None else _unpack(json.loads(unseal(text)))


def request_hash(pipeline: str, inputs: Any) -> str:
    """Identity of a request for idempotency: the pipeline name and its inputs."""
    canonical = json.dumps([pipeline, _pack(inputs)], sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
