"""The event bus: how the scheduler tells the world what happens in a run."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from legato.engine._events import Event

__all__ = ["EventBus", "Subscriber"]

Subscriber = Callable[[Event], Any]


class EventBus:
    """Delivers each event to every subscriber, in subscription order.

    A synchronous subscriber is called inline (it must be quick: it runs on the
    event loop). An asynchronous one (a coroutine function, or a callable returning
    an awaitable) is *awaited* before :meth:`publish` returns, so the scheduler does
    not move on until it is done. The durable store relies on this: its commit of a
    ``StepFinished`` completes before any dependent step starts.

    A subscriber that raises fails the run: the scheduler reports the error rather
    than continuing without, say, a checkpoint.
    """

    __slots__ = ("_subscribers",)

    def __init__(self, subscribers: Iterable[Subscriber] = ()) -> None:
        self._subscribers: list[Subscriber] = list(subscribers)

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add a subscriber; returns a function that removes it."""
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

        return unsubscribe

    def __bool__(self) -> bool:
        return bool(self._subscribers)

    def __len__(self) -> int:
        return len(self._subscribers)

    async def publish(self, event: Event) -> None:
        for subscriber in tuple(self._subscribers):
            result = subscriber(event)
            if inspect.isawaitable(result):
                await _await(result)


async def _await(result: Awaitable[Any]) -> None:
    await result
