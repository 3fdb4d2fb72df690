"""Single-flight: identical concurrent calls share one execution.

The first caller for a key is the *leader* and runs the call in its own task;
later callers for the same key wait for its outcome. A value or an exception
reaches every waiter. Nothing is remembered once the flight lands: the next call
for the key starts a new flight (remembering is the cache's job).

Cancellation: a waiter that is cancelled simply stops waiting. If the *leader* is
cancelled, its call is abandoned and one of the remaining waiters becomes the new
leader and runs its own (identical) call, so one caller's cancellation never
cancels or fails the others. No task outlives its caller and no background task is
needed; the price is a second upstream call in that rare case.

The stdlib and anyio have no such primitive, and the ones found on PyPI start bare
tasks or cancel everybody with the leader, hence this module.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import anyio

__all__ = ["Flight", "SingleFlight"]

V = TypeVar("V")


@dataclass(eq=False)
class Flight(Generic[V]):
    """One in-progress call shared by its waiters (see :meth:`SingleFlight.join`)."""

    leading: bool = False
    done: bool = False
    value: Any = None
    error: BaseException | None = None
    waiters: int = 0
    _wake: anyio.Event | None = field(default=None, repr=False)

    def try_lead(self) -> bool:
        """Become the leader if there is none and the flight has not landed."""
        if self.done or self.leading:
            return False
        self.leading = True
        return True

    def land(self, value: Any = None, error: BaseException | None = None) -> None:
        """The leader's call finished: hand ``value`` (or ``error``) to every waiter."""
        self.value, self.error, self.done, self.leading = value, error, True, False
        self._signal()

    def abandon(self) -> None:
        """The leader gave up (was cancelled) without an outcome: another waiter leads."""
        self.leading = False
        self._signal()

    async def wait(self) -> None:
        """Wait until the flight lands or needs a new leader."""
        if self._wake is None or self._wake.is_set():
            self._wake = anyio.Event()
        await self._wake.wait()

    def outcome(self) -> V:
        if self.error is not None:
            raise self.error
        value: V = self.value
        return value

    def _signal(self) -> None:
        if self._wake is not None:
            self._wake.set()


class SingleFlight(Generic[V]):
    """Deduplicate concurrent calls by key. See the module docstring for cancellation."""

    def __init__(self) -> None:
        self._flights: dict[Hashable, Flight[V]] = {}

    def __len__(self) -> int:
        """Number of flights in the air."""
        return len(self._flights)

    async def do(self, key: Hashable, fn: Callable[[], Awaitable[V]]) -> V:
        """Run ``fn()`` unless an identical call is in flight; either way return its result."""
        flight = self.join(key)
        try:
            while not flight.done:
                if flight.try_lead():
                    try:
                        value = await fn()
                    except anyio.get_cancelled_exc_class():
                        flight.abandon()
                        raise
                    except BaseException as exc:
                        self.land(key, flight, error=exc)
                        raise
                    self.land(key, flight, value)
                    return value
                await flight.wait()
            return flight.outcome()
        finally:
            self.leave(key, flight)

    def join(self, key: Hashable) -> Flight[V]:
        """Join (or start) the flight for ``key``. Pair with :meth:`leave`."""
        flight = self._flights.get(key)
        if flight is None:
            flight = self._flights[key] = Flight()
        flight.waiters += 1
        return flight

    def land(self, key: Hashable, flight: Flight[V], value: Any = None, error: BaseException | None = None) -> None:
        """Land ``flight``; later callers for ``key`` start a new one."""
        if self._flights.get(key) is flight:
            del self._flights[key]
        flight.land(value, error)

    def leave(self, key: Hashable, flight: Flight[V]) -> None:
        flight.waiters -= 1
        if flight.waiters == 0 and self._flights.get(key) is flight:
            del self._flights[key]
