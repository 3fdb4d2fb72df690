"""Live model tokens of the runs this replica executes, for ``/v1/runs/{id}/events``.

A run started with ``"stream": true`` hands every piece of text its ``llm:`` steps
produce to :meth:`TokenFeeds.publish`; each SSE follower of that run on this
replica holds a bounded buffer of them. Tokens are not stored: a follower gets the
tokens produced while it is connected (the stored events still tell it every
step's output), and a follower that reads slower than the model writes loses the
tokens that overflow its buffer instead of holding the run back.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from legato.engine import StepToken

__all__ = ["TokenFeeds"]

BUFFER = 4096  # tokens a follower may fall behind before it loses some


class TokenFeeds:
    """Followers of live tokens, by run id."""

    def __init__(self) -> None:
        self._followers: dict[str, set[MemoryObjectSendStream[StepToken]]] = {}
        self._live: set[str] = set()

    def publisher(self, run_id: str) -> Callable[[StepToken], None]:
        """The :func:`legato.engine.stream_tokens` callback of a run (inner runs of a
        cycle included: their tokens count as the run's)."""

        def publish(token: StepToken) -> None:
            for send in tuple(self._followers.get(run_id, ())):
                with contextlib.suppress(anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    send.send_nowait(token)

        return publish

    @contextlib.contextmanager
    def streaming(self, run_id: str) -> Iterator[None]:
        """Mark a run as streaming while this block runs it."""
        self._live.add(run_id)
        try:
            yield
        finally:
            self._live.discard(run_id)
            for send in self._followers.pop(run_id, set()):
                send.close()

    def live(self, run_id: str) -> bool:
        return run_id in self._live

    @contextlib.contextmanager
    def follow(self, run_id: str) -> Iterator[MemoryObjectReceiveStream[StepToken] | None]:
        """A receive stream of the run's tokens while the block lasts (None when the
        run does not stream on this replica)."""
        if run_id not in self._live:
            yield None
            return
        send, receive = anyio.create_memory_object_stream[StepToken](BUFFER)
        self._followers.setdefault(run_id, set()).add(send)
        try:
            with receive:
                yield receive
        finally:
            followers = self._followers.get(run_id)
            if followers is not None:
                followers.discard(send)
            send.close()
