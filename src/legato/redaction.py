"""Secret redaction for logs, span attributes, metric labels and stored text.

A leaf module (it imports nothing from legato) so that every layer can use it:
:mod:`legato.observe` re-exports it for logs, spans and metrics, and
:mod:`legato.store` scrubs error messages and journal text with it before they
reach the database.

One :class:`Redactor` holds a single compiled alternation of every pattern, so
redacting a string is one regex scan whatever the number of patterns. Values of
sensitive keys (``authorization``, ``api_key``, ``x-api-key``, ``password``...) are
replaced whole, whatever they look like; strings anywhere else are scanned for
known secret shapes (OpenAI ``sk-...``, Anthropic ``sk-ant-...``, legato ``lg_...``,
Hugging Face ``hf_...``, AWS access keys, bearer tokens, ``key=value`` pairs whose
key names a secret) plus the patterns configured in ``legato.yaml``
(``observe.redact``).

Written here rather than taken from a library: the log-scrubbing libraries on PyPI
either bind to one logging framework or scan with one regex per pattern; the same
redactor has to serve stdlib logging, OpenTelemetry attributes and Prometheus
labels, and it is small.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "DEFAULT_PATTERNS",
    "REDACTED",
    "SENSITIVE_KEYS",
    "Redactor",
    "default_redactor",
    "set_default_redactor",
]

REDACTED = "[REDACTED]"

# Each pattern either matches the secret itself or has a group named ``secret``:
# only that group is replaced, so ``Authorization: Bearer x`` keeps its header name.
DEFAULT_PATTERNS: tuple[str, ...] = (
    r"sk-ant-[A-Za-z0-9_\-]{8,}",
    r"sk-[A-Za-z0-9_\-]{16,}",
    r"lg_[A-Za-z0-9_\-]{10,}",  # a key's visible prefix (lg_ + 9) is public: listings, logs
    r"hf_[A-Za-z0-9]{16,}",
    r"(?:AKIA|ASIA)[0-9A-Z]{16}",
    r"\b[Bb]earer\s+(?P<secret>[A-Za-z0-9._~+/=\-]{8,})",
    r"\bBasic\s+(?P<secret>[A-Za-z0-9+/=]{8,})",
    r"(?i)\b(?:authorization|x-api-key|api[_-]?key|access[_-]?token|secret|password|passwd)"
    r"\"?'?\s*[:=]\s*\"?'?(?:(?:[Bb]earer|Basic|Token)\s+)?(?P<secret>(?!\[REDACTED\])[^\s\"',;}&]+)",
)

SENSITIVE_KEYS: frozenset[str] = frozenset(
    {
        "authorization",
        "proxy_authorization",
        "x_api_key",
        "api_key",
        "apikey",
        "api_token",
        "access_token",
        "refresh_token",
        "token",
        "secret",
        "client_secret",
        "password",
        "passwd",
        "cookie",
        "set_cookie",
        "master_key",
        "admin_key",
    }
)


def _normal_key(key: str) -> str:
    return key.strip().lower().replace("-", "_")


class Redactor:
    """Replaces secrets in strings and nested structures by ``[REDACTED]``.

    ``patterns`` are added to :data:`DEFAULT_PATTERNS` (``defaults=False`` to use
    only yours); ``keys`` are added to :data:`SENSITIVE_KEYS`. Invalid patterns raise
    ``ValueError`` naming the pattern. Instances are immutable and thread-safe.
    """

    __slots__ = ("_keys", "_regex", "patterns", "replacement")

    def __init__(
        self,
        patterns: Iterable[str] = (),
        *,
        keys: Iterable[str] = (),
        defaults: bool = True,
        replacement: str = REDACTED,
    ) -> None:
        extra = list(patterns)
        for p in extra:
            try:
                re.compile(p)
            except re.error as exc:
                raise ValueError(f"invalid redaction pattern {p!r}: {exc}") from exc
        self.patterns: tuple[str, ...] = (*(DEFAULT_PATTERNS if defaults else ()), *extra)
        self.replacement = replacement
        self._keys = frozenset(_normal_key(k) for k in keys) | (SENSITIVE_KEYS if defaults else frozenset())
        self._regex = self._compile(self.patterns)

    @staticmethod
    def _compile(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
        if not patterns:
            return None
        # Give each pattern's ``secret`` group a unique name inside the alternation.
        parts = [f"(?:{p.replace('(?P<secret>', f'(?P<s{i}>')})" for i, p in enumerate(patterns)]
        # Inline flags such as (?i) must lead the whole pattern; move them to scoped groups.
        parts = [re.sub(r"^\(\?:\(\?([aiLmsux]+)\)", r"(?\1:", p) for p in parts]
        return re.compile("|".join(parts))

    def _sub(self, match: re.Match[str]) -> str:
        for name, value in match.groupdict().items():
            if value is not None and name.startswith("s"):
                start, end = match.span(name)
                whole_start = match.start()
                text = match.group(0)
                return text[: start - whole_start] + self.replacement + text[end - whole_start :]
        return self.replacement

    def text(self, value: str) -> str:
        """``value`` with every secret-shaped substring replaced."""
        if self._regex is None or not value:
            return value
        return self._regex.sub(self._sub, value)

    def is_sensitive_key(self, key: str) -> bool:
        return _normal_key(key) in self._keys

    def value(self, value: Any) -> Any:
        """A copy of ``value`` (str, mapping, list, tuple or scalar) with secrets removed.

        Mapping values under a sensitive key are replaced whole. Other objects are
        returned as they are (they are not strings; their ``repr`` is the caller's).
        """
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {
                k: (self.replacement if isinstance(k, str) and self.is_sensitive_key(k) else self.value(v))
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            items = [self.value(v) for v in value]
            return items if isinstance(value, list) else tuple(items)
        return value

    def headers(self, headers: Iterable[tuple[str, str]] | Mapping[str, str]) -> dict[str, str]:
        """HTTP headers with sensitive ones replaced and the rest scanned."""
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        return {k: (self.replacement if self.is_sensitive_key(k) else self.text(v)) for k, v in pairs}

    def __repr__(self) -> str:
        return f"Redactor({len(self.patterns)} patterns, {len(self._keys)} keys)"


_default = Redactor()


def default_redactor() -> Redactor:
    """The process-wide redactor with the built-in patterns (see :func:`legato.observe.setup`)."""
    return _default


def set_default_redactor(redactor: Redactor) -> None:
    """Replace the process-wide redactor (``observe.redact`` patterns from ``legato.yaml``)."""
    global _default
    _default = redactor
