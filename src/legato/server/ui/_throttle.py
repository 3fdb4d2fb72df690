"""Throttling of failed dashboard sign-ins, per client address: the gateway's
:class:`~legato.server._throttle.FailureThrottle`, counting under ``dashboard-login``.

After ``limit`` failed sign-ins from one address within ``window_s`` seconds, every
sign-in from it (right or wrong) is answered 429 with ``Retry-After`` until the
window that counted them ends; with Redis the count is shared by every replica.
"""

from __future__ import annotations

from typing import Any

from legato.server._throttle import FailureThrottle

__all__ = ["LoginThrottle"]


class LoginThrottle(FailureThrottle):
    def __init__(self, **options: Any) -> None:
        super().__init__("dashboard-login", **options)
