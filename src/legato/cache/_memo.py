"""Step memoization: the engine's ``StepCache`` over the cache backends.

The engine computes a step's key from its inputs and its code/version hash and
asks ``await memo.get(key)`` before running a step marked ``cache: true``, then
``await memo.put(key, output)`` after. This module stores the outputs; it never
decides what a key is.

Outputs are arbitrary Python values, so they are pickled (JSON would turn tuples
into lists and dataclasses into dicts, and a replayed step must return what the
step returned). Unpickling runs code chosen by whoever wrote the bytes: point a
memo only at a backend you trust, or give it a ``secret`` so that every entry is
signed (HMAC-SHA256) and an entry that does not verify is ignored as a miss.

Step outputs hold what the pipeline's inputs held. With a ``sealing`` (the run store's
:meth:`~legato.store.RunStore.cache_sealing` when the store is encrypted) every entry
is encrypted before it reaches the backend, like the store's own payloads; the
authenticated encryption also means only a holder of the store's key can write an
entry that is unpickled. An entry that is not sealed, or sealed with a key this
process does not hold, is a miss, and an unsealed one is deleted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import pickle
from typing import Any

from legato.cache._backends import CacheBackend, MemoryBackend
from legato.cache._protect import Sealing
from legato.errors import LegatoError

__all__ = ["StepMemo"]

log = logging.getLogger("legato.cache")

_DIGEST = hashlib.sha256().digest_size


class StepMemo:
    """Remember step outputs by key in ``backend`` (an in-memory LRU by default).

    ``get(key)`` returns ``(True, value)`` on a hit and ``(False, None)`` on a miss;
    an entry that cannot be read back (corrupt, from another version, wrong
    signature) is a miss. ``put`` raises ``TypeError`` naming the key when the value
    cannot be pickled.
    """

    def __init__(
        self,
        backend: CacheBackend | None = None,
        *,
        namespace: str = "steps",
        ttl: float | None = None,
        secret: bytes | None = None,
        sealing: Sealing | None = None,
    ) -> None:
        self.backend: CacheBackend = backend if backend is not None else MemoryBackend()
        self.namespace = namespace
        self.ttl = ttl
        self._secret = secret
        self.sealing = sealing

    def __repr__(self) -> str:
        return f"StepMemo({self.backend!r}, namespace={self.namespace!r})"

    def _key(self, key: str) -> str:
        return "memo:" + hashlib.sha256(f"{self.namespace}\x00{key}".encode()).hexdigest()

    async def get(self, key: str) -> tuple[bool, Any]:
        raw = await self.backend.get(self._key(key))
        if raw is None:
            return False, None
        raw = await self._open(key, raw)
        if raw is None:
            return False, None
        payload = self._verify(raw)
        if payload is None:
            log.warning("step memo entry for %r failed its signature check; treated as a miss", key)
            return False, None
        try:
            return True, pickle.loads(payload)  # noqa: S301 - see the module docstring
        except Exception as exc:
            log.warning("step memo entry for %r could not be read (%s); treated as a miss", key, exc)
            return False, None

    async def put(self, key: str, value: Any) -> None:
        try:
            payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise TypeError(f"output for step key {key!r} cannot be memoized: {type(exc).__name__}: {exc}") from exc
        raw = self._sign(payload)
        if self.sealing is not None:  # the seal carries text: the pickle goes base64-encoded
            raw = self.sealing.seal(base64.b64encode(raw))
        await self.backend.set(self._key(key), raw, self.ttl)

    async def _open(self, key: str, raw: bytes) -> bytes | None:
        """``raw`` as it was before sealing; None (a miss) when it cannot be opened."""
        if self.sealing is None:
            return raw
        try:
            opened = self.sealing.open(raw)
            if opened is None:  # written before sealing was turned on
                log.warning("step memo entry for %r is not sealed; deleted and treated as a miss", key)
                await self.backend.delete(self._key(key))
                return None
            return base64.b64decode(opened, validate=True)
        except (binascii.Error, LegatoError, ValueError) as exc:
            log.warning("step memo entry for %r could not be opened (%s); treated as a miss", key, type(exc).__name__)
            return None

    async def aclose(self) -> None:
        await self.backend.aclose()

    def _sign(self, payload: bytes) -> bytes:
        if self._secret is None:
            return payload
        return hmac.new(self._secret, payload, hashlib.sha256).digest() + payload

    def _verify(self, raw: bytes) -> bytes | None:
        if self._secret is None:
            return raw
        mac, payload = raw[:_DIGEST], raw[_DIGEST:]
        expected = hmac.new(self._secret, payload, hashlib.sha256).digest()
        return payload if hmac.compare_digest(mac, expected) else None
