"""An incremental Server-Sent Events decoder.

Written here rather than taken from ``httpx-sse`` because the adapters need two
things it does not give: byte-exact decoding across arbitrary chunk boundaries
(split ``\\r\\n``, split UTF-8 sequences) with no per-line allocation of a
``str`` for the whole buffer, and the knowledge of whether the stream ended in the
middle of an event (an interrupted stream must never look like a clean end).

It follows the WHATWG "event stream interpretation": lines end with ``\\r\\n``,
``\\n`` or ``\\r``; a line starting with ``:`` is a comment; ``data`` lines of one
event are joined with ``\\n``; one leading space after the colon is dropped; an
empty line dispatches the event; an event with no ``data`` line is not dispatched;
a byte order mark at the start of the stream is ignored.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

__all__ = ["SSEDecoder", "ServerSentEvent"]


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    """Feed bytes with :meth:`feed`, get complete events back; call :meth:`close` at EOF.

    ``pending`` is true while part of an event (or of a line) has been received but
    not dispatched: at the end of the body that means the stream was cut.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._retry: int | None = None
        self._has_fields = False
        self._last_was_cr = False
        self._started = False

    @property
    def pending(self) -> bool:
        return bool(self._buffer) or self._has_fields

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        text = self._decoder.decode(chunk)
        if not text:
            return []
        if not self._started:
            self._started = True
            text = text.removeprefix("\ufeff")  # a byte order mark at the very start is ignored
        if self._last_was_cr and text.startswith("\n"):
            text = text[1:]  # the \n of a \r\n split across chunks
        self._last_was_cr = text.endswith("\r")
        buffer = self._buffer + text
        events: list[ServerSentEvent] = []
        start = 0
        length = len(buffer)
        while start < length:
            cr = buffer.find("\r", start)
            lf = buffer.find("\n", start)
            if cr == -1 and lf == -1:
                break
            if cr == -1 or (lf != -1 and lf < cr):
                end, nxt = lf, lf + 1
            else:
                end = cr
                nxt = cr + 2 if cr + 1 < length and buffer[cr + 1] == "\n" else cr + 1
            event = self._line(buffer[start:end])
            if event is not None:
                events.append(event)
            start = nxt
        self._buffer = buffer[start:]
        return events

    def close(self) -> list[ServerSentEvent]:
        """Flush at end of stream. A trailing event without its blank line is dropped
        (per the spec); ``pending`` tells the caller that it was there."""
        tail = self._decoder.decode(b"", final=True)
        if tail:
            self._buffer += tail
        return []

    def _line(self, line: str) -> ServerSentEvent | None:
        if not line:
            if not self._has_fields:
                return None
            event = None
            if self._data:
                event = ServerSentEvent("\n".join(self._data), self._event or "message", self._id, self._retry)
            self._data = []
            self._event = ""
            self._retry = None
            self._has_fields = False
            return event
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        self._has_fields = True
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return None
