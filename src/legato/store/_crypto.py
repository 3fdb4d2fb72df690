"""Envelope encryption of stored payloads (run inputs and outputs, step values, map
items and step-journal rows, event data).

Two levels of keys, as in every KMS: a **key-encryption key** (KEK, 32 bytes) that
never touches the database, named by a reference (``env:NAME`` or ``file:PATH``),
and **data keys** (AES-256-GCM) that encrypt the values. Data keys are stored in the
``data_keys`` table wrapped (AES-GCM encrypted) by the KEK, with the KEK's id (a
fingerprint) and reference. Each sealed value names its data key::

    legato:enc:v1:<data key id>:<base64(nonce | ciphertext | tag)>

so rotating the KEK re-wraps the few data keys and never rewrites a payload. The
data key id is the associated data of every seal: a ciphertext moved under another
key id does not decrypt. Values written before encryption was turned on stay
readable (they are plain JSON, which never starts with ``legato:``).

Decryption needs no store object: every store that opens registers the data keys it
unwrapped in a process-wide keyring (ids are random, so stores never collide), and
:func:`unseal` looks them up. A value whose data key could not be unwrapped raises
:class:`~legato.errors.EncryptionKeyError` naming the key reference, never returns
garbage. The primitives are the ``cryptography`` package's AESGCM; only the
framing above is ours. ``cryptography`` is imported by the functions that encrypt or
decrypt (about 8 MB of memory), so a store without encryption never loads it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from legato.errors import ConfigError, EncryptionKeyError

__all__ = [
    "PREFIX",
    "CacheSealing",
    "Kek",
    "Sealer",
    "is_sealed",
    "load_kek",
    "register",
    "release",
    "unseal",
    "unwrap",
    "wrap",
]

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "legato:enc:v1:"
_NONCE = 12


@dataclass(frozen=True, slots=True)
class Kek:
    """A key-encryption key: its bytes, its reference and its id (a fingerprint)."""

    ref: str
    key: bytes

    @property
    def id(self) -> str:
        return hashlib.sha256(b"legato-kek:" + self.key).hexdigest()[:16]


def _key_bytes(text: str, ref: str) -> bytes:
    text = text.strip()
    try:
        raw = (
            bytes.fromhex(text) if len(text) == 64 else base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_")
        )
    except (ValueError, binascii.Error):
        raw = b""
    if len(raw) != 32:
        raise EncryptionKeyError(
            f"store encryption key {ref}: expected 32 bytes as base64 or 64 hex digits "
            "(make one with `legato store new-key`)",
            ref=ref,
        )
    return raw


def load_kek(ref: str) -> Kek:
    """Read the KEK named by ``ref`` (``env:NAME`` or ``file:PATH``)."""
    kind, _, name = ref.partition(":")
    if kind == "env" and name:
        value = os.environ.get(name)
        if not value:
            raise EncryptionKeyError(f"store encryption key {ref}: the environment variable {name} is not set", ref=ref)
        return Kek(ref, _key_bytes(value, ref))
    if kind == "file" and name:
        try:
            data = Path(name).expanduser().read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise EncryptionKeyError(f"store encryption key {ref}: cannot read {name} ({reason})", ref=ref) from None
        return Kek(ref, _key_bytes(data, ref))
    raise ConfigError(f"store encryption key {ref!r}: write it as env:NAME or file:PATH")


def new_key_text() -> str:
    """A fresh 32-byte key as URL-safe base64 (what ``legato store new-key`` prints)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii")


def _aesgcm(key: bytes) -> AESGCM:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


def wrap(kek: Kek, dek_id: str, dek: bytes) -> str:
    nonce = secrets.token_bytes(_NONCE)
    return base64.b64encode(nonce + _aesgcm(kek.key).encrypt(nonce, dek, dek_id.encode())).decode("ascii")


def unwrap(kek: Kek, dek_id: str, wrapped: str) -> bytes:
    from cryptography.exceptions import InvalidTag

    blob = base64.b64decode(wrapped)
    try:
        return _aesgcm(kek.key).decrypt(blob[:_NONCE], blob[_NONCE:], dek_id.encode())
    except InvalidTag:
        raise EncryptionKeyError(
            f"store encryption key {kek.ref} (id {kek.id}) does not unwrap data key {dek_id}: "
            "the key or the stored data key was changed",
            ref=kek.ref,
        ) from None


class Sealer:
    """Encrypts text with one data key (what a store writes with)."""

    def __init__(self, dek_id: str, dek: bytes) -> None:
        self.dek_id = dek_id
        self._aead = _aesgcm(dek)
        self._aad = dek_id.encode()

    def seal(self, text: str) -> str:
        nonce = secrets.token_bytes(_NONCE)
        sealed = self._aead.encrypt(nonce, text.encode("utf-8", "surrogatepass"), self._aad)
        return f"{PREFIX}{self.dek_id}:{base64.b64encode(nonce + sealed).decode('ascii')}"

    def open(self, body: str) -> str:
        from cryptography.exceptions import InvalidTag

        blob = base64.b64decode(body)
        try:
            plain = self._aead.decrypt(blob[:_NONCE], blob[_NONCE:], self._aad)
        except InvalidTag:
            raise EncryptionKeyError(f"a value sealed with data key {self.dek_id} fails authentication") from None
        return plain.decode("utf-8", "surrogatepass")


class CacheSealing:
    """A response cache's :class:`~legato.cache.Sealing` over a store's current data key:
    values are sealed like stored payloads, and opened through the keyring."""

    def __init__(self, sealer: Sealer) -> None:
        self._sealer = sealer

    def seal(self, value: bytes) -> bytes:
        return self._sealer.seal(value.decode("utf-8", "surrogatepass")).encode("ascii")

    def open(self, value: bytes) -> bytes | None:
        text = value.decode("utf-8", "replace")
        if not is_sealed(text):
            return None
        return unseal(text).encode("utf-8", "surrogatepass")


_lock = threading.Lock()
_keys: dict[str, Sealer] = {}
_users: dict[str, int] = {}  # data key id -> how many open stores hold it
_locked: dict[str, str] = {}  # data key id -> why it is not usable (names the key reference)


def register(dek_id: str, dek: bytes | None, *, reason: str = "") -> Sealer | None:
    """Make a data key usable by :func:`unseal` until :func:`release` (or record why it
    is not usable). Keys are counted per open store: a key leaves memory when the last
    store that unwrapped it closes, and a store opened without the key cannot read it."""
    with _lock:
        if dek is None:
            if dek_id not in _keys:
                _locked[dek_id] = reason
            return None
        sealer = _keys.get(dek_id) or Sealer(dek_id, dek)
        _keys[dek_id] = sealer
        _users[dek_id] = _users.get(dek_id, 0) + 1
        _locked.pop(dek_id, None)
        return sealer


def release(dek_ids: list[str]) -> None:
    with _lock:
        for dek_id in dek_ids:
            left = _users.get(dek_id, 0) - 1
            if left > 0:
                _users[dek_id] = left
            else:
                _users.pop(dek_id, None)
                _keys.pop(dek_id, None)


def is_sealed(text: str | None) -> bool:
    return text is not None and text.startswith(PREFIX)


def unseal(text: str) -> str:
    """The plaintext of a sealed value (plain values pass through unchanged)."""
    if not text.startswith(PREFIX):
        return text
    dek_id, _, body = text[len(PREFIX) :].partition(":")
    sealer = _keys.get(dek_id)
    if sealer is None:
        reason = _locked.get(dek_id) or (
            f"data key {dek_id} is not loaded: open the store with its encryption key (store.encryption.key)"
        )
        raise EncryptionKeyError(f"cannot read an encrypted value: {reason}")
    return sealer.open(body)
