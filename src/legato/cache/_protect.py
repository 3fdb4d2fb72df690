"""What keeps personal data out of cache backends: sealed values and a subject index.

A :class:`Sealing` turns a cache value into ciphertext before it reaches a backend
and back after (the run store provides one over its envelope keys:
:meth:`legato.store.RunStore.cache_sealing`). A :class:`ResponseCache` given one never
writes plaintext and ignores (and deletes) any unsealed entry it finds under its key.

A request's ``metadata["subject"]`` (a customer id, a ticket's requester) tags every
entry stored for it, so :func:`erase_subject` can delete them all later. Subjects are
kept as SHA-256 digests: the index names no one.
"""

from __future__ import annotations

import hashlib
from typing import Protocol, runtime_checkable

__all__ = ["Sealing", "SubjectIndex", "erase_subject", "subject_digest"]


@runtime_checkable
class Sealing(Protocol):
    """Encrypts cache values (``seal``) and decrypts them (``open``: ``None`` when the
    value is not sealed, so a plaintext entry is never served from a protected cache)."""

    def seal(self, value: bytes) -> bytes: ...

    def open(self, value: bytes) -> bytes | None: ...


@runtime_checkable
class SubjectIndex(Protocol):
    """A backend that can list the keys stored for a subject."""

    async def tag(self, subject: str, key: str, ttl: float | None) -> None:
        """Remember that ``key`` holds data about ``subject`` (a digest)."""
        ...

    async def erase(self, subject: str) -> int:
        """Delete every entry of ``subject`` (a digest); how many there were."""
        ...


def subject_digest(subject: str) -> str:
    return hashlib.sha256(b"legato-subject:" + subject.encode("utf-8", "surrogatepass")).hexdigest()


async def erase_subject(backend: object, subject: str) -> int:
    """Delete the entries stored for ``subject`` in ``backend``; 0 for a backend that
    keeps no subject index."""
    if not isinstance(backend, SubjectIndex):
        return 0
    return await backend.erase(subject_digest(subject))
