"""Who is looking at the dashboard, and what they may see.

A request is let in with ``Authorization: Bearer <key>`` or with a session cookie
from the sign-in form (:mod:`legato.server.ui._sessions`). Keys that may sign in:
the admin key (the gateway's master key) and, when the dashboard has a key store,
every API key with the ``runs:read`` scope. What the signed-in key sees follows the
one ownership rule of the runs API and the MCP tools (:class:`legato.store.Principal`):
its own runs, events, journal entries and spend; keys with the ``admin`` scope and
the admin key see everything, and only they see the models page. With neither an
admin key nor a key store, the dashboard answers loopback clients only.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from legato.errors import InvalidAPIKey
from legato.server._auth import MASTER, principal_of
from legato.server._keys import ApiKey
from legato.server.ui._sessions import SessionStore
from legato.store import LOCAL, Principal

__all__ = ["COOKIE", "Access", "Viewer", "client_address", "same_origin"]

COOKIE = "legato_dashboard"


@dataclass(frozen=True, slots=True)
class Viewer:
    """The signed-in caller: what it may see and how the dashboard names it."""

    principal: Principal
    key: ApiKey | None  # None for a loopback client of a dashboard without keys
    label: str

    @property
    def admin(self) -> bool:
        return self.principal.sees_all


LOOPBACK = Viewer(LOCAL, None, "local access")


def viewer_of(key: ApiKey) -> Viewer:
    label = "master key" if key is MASTER else f"{key.name} ({key.prefix}…)"
    return Viewer(principal_of(key), key, label)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _is_loopback(request: Request) -> bool:
    """Whether the peer of the connection is this machine. Behind a reverse proxy on
    the same machine every client looks local: configure an admin key there."""
    try:
        return ipaddress.ip_address(request.client.host if request.client else "").is_loopback
    except ValueError:
        return False


class Access:
    """Resolves viewers from bearer keys and session cookies."""

    def __init__(
        self, admin_key: Callable[[], str | None], keys: Callable[[], Any], sessions: Callable[[], SessionStore]
    ) -> None:
        self._admin_key = admin_key
        self._keys = keys
        self.sessions = sessions

    @property
    def open_to_loopback(self) -> bool:
        return self._admin_key() is None and self._keys() is None

    async def viewer(self, request: Request) -> Viewer | None:
        if self.open_to_loopback:
            return LOOPBACK if _is_loopback(request) else None
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return await self.from_secret(value.strip())
        token = request.cookies.get(COOKIE)
        if not token:
            return None
        session = await self.sessions().resolve(token)
        return await self.from_key_id(session.key_id) if session is not None else None

    async def from_secret(self, secret: str) -> Viewer | None:
        """The viewer signing in with ``secret``; None when it may not."""
        admin = self._admin_key()
        if admin is not None and hmac.compare_digest(secret.encode("utf-8", "surrogatepass"), admin.encode()):
            return viewer_of(MASTER)
        keys = self._keys()
        if keys is None:
            return None
        try:
            key = await keys.authenticate(secret)
        except InvalidAPIKey:
            return None
        return viewer_of(key) if key.has_scope("runs:read") else None

    async def from_key_id(self, key_id: str) -> Viewer | None:
        """The viewer behind a session: the key must still exist, be live and may sign in."""
        if key_id == MASTER.id:
            return viewer_of(MASTER) if self._admin_key() is not None else None
        keys = self._keys()
        key = await keys.get(key_id) if keys is not None else None
        if key is None or key.revoked or not key.has_scope("runs:read"):
            return None
        return viewer_of(key)


def same_origin(request: Request) -> bool:
    """False when the browser says the request came from another site."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return request.headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")
    return origin == f"{request.url.scheme}://{request.url.netloc}"
