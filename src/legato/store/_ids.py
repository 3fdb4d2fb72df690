"""Run ids and lease owner ids, and whether an owner's process is gone.

A lease owner id names the process that holds a run, precisely enough to tell
from another process whether it still exists::

    host:pid:random:b=BOOT:ns=PIDNS:t=START

``BOOT`` is the first 12 characters of ``/proc/sys/kernel/random/boot_id`` (one per
boot of the kernel), ``PIDNS`` the inode of ``/proc/self/ns/pid`` (the PID namespace:
a container, ``unshare --pid``) and ``START`` the process's start time in clock
ticks after boot (``/proc/self/stat`` field 22), which tells a live process from a
later one that reused its PID. Another process may declare the owner *gone* only
when it shares the host, the boot and the PID namespace and that PID is free or
belongs to a process started at another time. Anything else (another host, another
namespace, another boot that may be another machine with the same hostname, an id
written by an older legato) is *unknown*: its lease is honoured until it expires.

Where ``/proc`` is missing (macOS, Windows) the boot, namespace and start fields are
``-``; two such processes on one host compare PIDs only.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path

from legato._runid import new_run_id

__all__ = ["OwnerId", "OwnerState", "new_owner_id", "new_run_id", "owner_gone", "owner_state"]

_UNKNOWN = "-"


class OwnerState(StrEnum):
    """What this process can tell about a lease owner."""

    ALIVE = "alive"  # the owner's process exists (or is this process)
    GONE = "gone"  # provably no longer running: its lease may be taken at once
    UNKNOWN = "unknown"  # cannot be checked from here: wait for the lease to expire


@dataclass(frozen=True, slots=True)
class OwnerId:
    """The parts of a lease owner id (see the module docstring)."""

    host: str
    pid: int
    nonce: str
    boot: str = _UNKNOWN
    pidns: str = _UNKNOWN
    start: str = _UNKNOWN

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.nonce}:b={self.boot}:ns={self.pidns}:t={self.start}"

    @classmethod
    def parse(cls, text: str) -> OwnerId | None:
        """The parts of ``text``, or None when it is not an owner id of this format."""
        parts = text.split(":")
        if len(parts) != 6 or not parts[1].isdigit():
            return None
        fields = dict(p.partition("=")[::2] for p in parts[3:])
        if set(fields) != {"b", "ns", "t"}:
            return None
        return cls(parts[0], int(parts[1]), parts[2], fields["b"], fields["ns"], fields["t"])


def new_owner_id() -> str:
    """A lease owner id naming this host, boot, PID namespace and process."""
    pid = os.getpid()
    return str(OwnerId(socket.gethostname(), pid, secrets.token_hex(4), _boot_id(), _pid_namespace(), _start_time(pid)))


def owner_state(owner: str | None) -> OwnerState:
    """Whether the process named by ``owner`` is alive, gone, or cannot be told from here."""
    if not owner:
        return OwnerState.GONE
    them = OwnerId.parse(owner)
    if them is None or them.host != socket.gethostname():
        return OwnerState.UNKNOWN
    boot, pidns = _boot_id(), _pid_namespace()
    if them.boot != boot or them.pidns != pidns:
        return OwnerState.UNKNOWN
    if them.pid == os.getpid() and them.start == _start_time(them.pid):
        return OwnerState.ALIVE
    try:
        os.kill(them.pid, 0)
    except ProcessLookupError:
        return OwnerState.GONE
    except PermissionError:
        pass  # it exists, under another user
    if them.start != _UNKNOWN and _start_time(them.pid) not in (them.start, _UNKNOWN):
        return OwnerState.GONE  # the PID was reused by a later process
    return OwnerState.ALIVE


def owner_gone(owner: str | None) -> bool:
    """True when ``owner``'s process provably no longer exists, so its lease can be
    taken over without waiting for it to expire (see :func:`owner_state`)."""
    return owner_state(owner) is OwnerState.GONE


@cache
def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:12] or _UNKNOWN
    except OSError:
        return _UNKNOWN


@cache
def _pid_namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return _UNKNOWN


def _start_time(pid: int) -> str:
    # /proc/self, not /proc/PID: inside a PID namespace without its own /proc mount,
    # /proc/PID would name the process with that PID outside the namespace
    proc = "self" if pid == os.getpid() else str(pid)
    try:
        stat = Path(f"/proc/{proc}/stat").read_bytes()
    except OSError:
        return _UNKNOWN
    # the command name (field 2) is in parentheses and may hold spaces: split after it
    fields = stat[stat.rfind(b")") + 2 :].split()
    return fields[19].decode() if len(fields) > 19 else _UNKNOWN
