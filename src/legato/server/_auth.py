"""Who is calling: API key from ``Authorization: Bearer`` (OpenAI clients) or
``x-api-key`` (Anthropic clients), checked against the master key and the key store.

401 means "we do not know who you are" (no key, unknown, malformed or revoked key);
403 means "we know you, and you may not do this" (missing scope or model). The
master key is compared in constant time and acts as a key with every scope and no
limits. Key material never enters an error message: only the visible prefix does.

:func:`principal_of` turns a key into the store's :class:`~legato.store.Principal`:
the key's id is its tenant, and keys with the ``admin`` scope (the master key among
them) see every tenant. The runs API, the MCP tools at ``/mcp`` and the dashboard
all decide what a caller sees from that one value.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from legato.errors import InvalidAPIKey, ScopeDenied
from legato.server._keys import SCOPES, ApiKey, KeyStore
from legato.store import Principal

__all__ = [
    "IDENTIFIED",
    "MASTER",
    "Authenticator",
    "admit",
    "check_model",
    "check_scope",
    "principal_of",
    "request_principal",
    "require",
]

IDENTIFIED = "legato.identified"  # the scope-state entry holding a key already checked from the headers
MASTER = ApiKey(id="master", prefix="master", name="master key", scopes=frozenset(SCOPES))

# Declared for the OpenAPI spec (security schemes); the headers are read directly below.
bearer_scheme = HTTPBearer(auto_error=False, description="`Authorization: Bearer lg_...`")
x_api_key_scheme = APIKeyHeader(name="x-api-key", auto_error=False, description="`x-api-key: lg_...`")


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a request presents (``headers`` with lower-case names)."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    x_api_key = headers.get("x-api-key")
    return x_api_key.strip() if x_api_key else None


class Authenticator:
    def __init__(self, keys: KeyStore, master_key: str | None) -> None:
        self.keys = keys
        self._master = master_key.encode() if master_key else None

    async def identify(self, request: Request) -> ApiKey:
        known = request.scope.get("state", {}).get(IDENTIFIED)
        if isinstance(known, ApiKey):
            return known
        secret = presented_key(request.headers)
        if not secret:
            raise InvalidAPIKey("missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'")
        if self._is_master(secret):
            return MASTER
        return await self.keys.authenticate(secret)

    def known(self, headers: Mapping[str, str]) -> ApiKey | None:
        """The valid key ``headers`` present, when that is known without a lookup (the
        master key, or a key in this replica's cache); None otherwise."""
        secret = presented_key(headers)
        if not secret:
            return None
        return MASTER if self._is_master(secret) else self.keys.cached(secret)

    def _is_master(self, secret: str) -> bool:
        return self._master is not None and hmac.compare_digest(secret.encode("utf-8", "surrogatepass"), self._master)


def require(scope: str | None) -> Callable[..., Awaitable[ApiKey]]:
    """A FastAPI dependency returning the caller's key when it has ``scope`` (None: any valid key)."""

    async def dependency(
        request: Request,
        _bearer: HTTPAuthorizationCredentials | None = Security(bearer_scheme),
        _x_api_key: str | None = Security(x_api_key_scheme),
    ) -> ApiKey:
        return await check_scope(request, scope)

    return dependency


async def check_scope(request: Request, scope: str | None) -> ApiKey:
    """The caller's key; :class:`InvalidAPIKey` (401) or :class:`ScopeDenied` (403)."""
    auth: Authenticator = request.app.state.gateway.auth
    return admit(request.scope, await auth.identify(request), scope)


def admit(request_scope: MutableMapping[str, Any], key: ApiKey, scope: str | None) -> ApiKey:
    """``key`` as the caller of the request (``request_scope``: its ASGI scope) when it has
    ``scope`` (None: any valid key); :class:`ScopeDenied` (403) otherwise."""
    if scope is not None and not key.has_scope(scope):
        raise ScopeDenied(f"API key {key.prefix}... lacks the {scope!r} scope")
    request_scope.setdefault("state", {})["api_key"] = key
    return key


def principal_of(key: ApiKey) -> Principal:
    """The store's view of ``key``: it owns what it creates; ``admin`` keys see everything."""
    return Principal(tenant=key.id, sees_all=key.has_scope("admin"))


def request_principal(request: object) -> Principal | None:
    """The caller of a request that :func:`check_scope` admitted; None when it was not checked."""
    state = getattr(request, "scope", {}).get("state") or {}
    key = state.get("api_key")
    return principal_of(key) if isinstance(key, ApiKey) else None


def check_model(key: ApiKey, model: str) -> None:
    if not key.allows_model(model):
        raise ScopeDenied(f"API key {key.prefix}... may not use model {model!r}")
