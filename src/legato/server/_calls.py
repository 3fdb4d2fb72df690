"""The gateway's model calls, kept in the run store for the dashboard's call view
(decision 0049).

Each served model is observed by one :class:`legato.observe.Instrumented`, built once
per model, whose ``on_call`` is :meth:`CallRecorder.record` (the observer sits inside
the key's guardrail, so the prompt kept is the one the model saw). Whose call it was is
not given to a wrapper made for the request (that wrapper, its closure and its second
pass over the call cost about as much CPU as an in-process model's answer): the model
route names the key with :func:`calls_of` before it calls the model, and the request
id is the access log's (:data:`legato.observe.request_id`); both are context
variables, read when the call is reported, in the request's context (a stream's last
chunk is read by the response that relays it). A call made where no route named a key
is not kept. The finished call is
added to an in-memory buffer and :meth:`CallRecorder.run` writes the buffer every
``interval_s`` seconds, or as soon as it holds ``batch_rows`` calls, in transactions
of at most ``batch_rows`` rows (:meth:`CallRecorder.flush` runs once more at
shutdown), so no request waits for a database write. Redaction and sealing happen at
the flush, off the request's path and off the event loop: a second's calls turned
into rows on the loop held it for tens of milliseconds every second (the gateway's
p99 latency at a few hundred requests a second), so the rows are built in a worker
thread. That thread still holds the interpreter while it works, and so does the
database driver's while it binds a batch's values: at 1,600 calls a second, one flush
a second was 35-40 ms of such work, which stalled the event loop in the same rhythm
(the admitted p99 under overload rose from 79 to 116-151 ms with the rows on). Batches
of ``batch_rows`` (256: about 6 ms of that work) bound each stall. The buffer holds at most
``max_buffered`` calls: when the store cannot keep up, the oldest are dropped and
counted (``dropped``) rather than growing without bound; the spend records and key
budgets, which are kept apart, are not affected.
"""

from __future__ import annotations

from collections import deque
from contextvars import ContextVar
from typing import Any

import anyio
import anyio.to_thread

from legato.observe import ModelCall
from legato.observe import request_id as request_id_var
from legato.server._flushing import Wake, flush_every
from legato.store import RunStore, call_values, record_calls

__all__ = ["CallRecorder", "calls_of"]

_caller: ContextVar[str | None] = ContextVar("legato_gateway_caller", default=None)


def calls_of(key_id: str) -> None:
    """The model calls made from here on in this request (its context) are ``key_id``'s."""
    _caller.set(key_id)


class CallRecorder:
    def __init__(
        self, store: RunStore, *, interval_s: float = 1.0, batch_rows: int = 256, max_buffered: int = 10_000
    ) -> None:
        self.store = store
        self.interval_s = interval_s
        self.batch_rows = batch_rows
        self.dropped = 0
        self._buffer: deque[tuple[ModelCall, str, str | None]] = deque(maxlen=max_buffered)
        self._lock = anyio.Lock()
        self._wake = Wake()

    def record(self, call: ModelCall) -> None:
        """The served models' ``on_call``: ``call`` kept as a gateway call of the key the
        route named (:func:`calls_of`) with the request's id; not kept without a key."""
        key_id = _caller.get()
        if key_id is not None:
            self.add(call, key_id, request_id_var.get())

    def add(self, call: ModelCall, key_id: str, request_id: str | None) -> None:
        if len(self._buffer) == self._buffer.maxlen:
            self.dropped += 1
        self._buffer.append((call, key_id, request_id))
        if len(self._buffer) == self.batch_rows:
            self._wake.set()

    async def run(self) -> None:
        """Flush periodically, or when a batch is ready, until cancelled (owned by the
        app's task group)."""
        await flush_every(self.interval_s, self.flush, "model call records", wake=self._wake)

    async def flush(self) -> None:
        """Write what is buffered, ``batch_rows`` rows per transaction."""
        async with self._lock:
            while self._buffer:
                take = min(self.batch_rows, len(self._buffer))
                batch = [self._buffer.popleft() for _ in range(take)]
                try:
                    rows = await anyio.to_thread.run_sync(self._rows, batch)
                    await record_calls(self.store, rows)
                except BaseException:
                    self._buffer.extendleft(reversed(batch))  # kept for the next attempt, within the bound
                    raise

    def _rows(self, batch: list[tuple[ModelCall, str, str | None]]) -> list[dict[str, Any]]:
        """The stored rows of ``batch`` (redacted, sealed when the store encrypts)."""
        return [
            call_values(call.as_dict(), self.store, source="gateway", tenant=key_id, request_id=request_id)
            for call, key_id, request_id in batch
        ]
