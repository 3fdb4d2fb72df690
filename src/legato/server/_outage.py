"""Logging a shared dependency's outage without flooding the log.

While Redis (or another store every request touches) is down, each request meets the
same failure. Logging each one would write thousands of identical warnings a second
and bury everything else. :class:`OutageLog` writes one warning when the outage
starts, then at most one per ``every_s`` seconds saying how many failures it did not
log, and one line when the dependency answers again. The standard library's logging
has no such filter and the usual add-ons (rate-limiting filters) drop records without
counting them or telling when the outage ends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["OutageLog"]


class OutageLog:
    """The log of one dependency's outages (``what`` names it in the recovery line)."""

    def __init__(
        self, log: logging.Logger, what: str, *, every_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.log = log
        self.what = what
        self.every_s = every_s
        self._clock = clock
        self._down = False
        self._next = 0.0
        self._unlogged = 0

    @property
    def down(self) -> bool:
        return self._down

    def failed(self, message: str, *args: object) -> None:
        """One failure: logged (as ``message % args``) if it starts an outage or the last
        line is ``every_s`` old, otherwise only counted."""
        now = self._clock()
        if self._down and now < self._next:
            self._unlogged += 1
            return
        if self._unlogged:
            message += f" ({self._unlogged} more such failures since the last report)"
        self.log.warning(message, *args)
        self._down, self._next, self._unlogged = True, now + self.every_s, 0

    def recovered(self) -> None:
        """The dependency answered: ends an outage (logged once)."""
        if self._down:
            self._down = False
            extra = f"; {self._unlogged} failures were not logged" if self._unlogged else ""
            self._unlogged = 0
            self.log.info("%s answers again%s", self.what, extra)
