"""Run ids and lease owner ids, and whether an owner's process is gone."""

from __future__ import annotations

import os
import secrets
import socket
import time

__all__ = ["new_owner_id", "new_run_id", "owner_gone"]


def new_run_id() -> str:
    """A run id that sorts by creation time: 12 hex digits of milliseconds + 12 random."""
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(6)}"


def new_owner_id() -> str:
    """A lease owner id naming this host and process (``host:pid:random``)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def owner_gone(owner: str | None) -> bool:
    """True when ``owner`` names a process on this host that no longer exists, so its
    lease can be taken over without waiting for it to expire."""
    if not owner:
        return True
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
