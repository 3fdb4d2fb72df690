"""A connection's writes within one step of the event loop leave as one ``send``:
checked on a real socket pair and a real asyncio transport."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from legato.server._conn import _Coalescing


class _Sink(asyncio.Protocol):
    pass


async def _pair() -> tuple[Any, socket.socket, list[bytes]]:
    """A real transport over one end of a socket pair (its writes recorded) and the other end."""
    ours, theirs = socket.socketpair()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_accepted_socket(_Sink, ours)
    sent: list[bytes] = []
    write = transport.write

    def recording(data: Any) -> None:
        sent.append(bytes(data))
        write(data)

    transport.write = recording  # type: ignore[method-assign]
    theirs.setblocking(False)
    return transport, theirs, sent


async def _received(sock: socket.socket, size: int) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    while len(data) < size:
        data += await loop.sock_recv(sock, size - len(data))
    return data


async def test_a_head_and_its_body_written_in_one_step_are_one_send() -> None:
    transport, theirs, sent = await _pair()
    coalescing = _Coalescing(transport, asyncio.get_running_loop())
    coalescing.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    coalescing.write(b"{}")
    assert sent == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    assert await _received(theirs, len(sent[0])) == sent[0]
    coalescing.close()
    theirs.close()


async def test_a_lone_write_leaves_at_the_end_of_the_step_and_close_sends_what_is_held() -> None:
    transport, theirs, sent = await _pair()
    coalescing = _Coalescing(transport, asyncio.get_running_loop())
    coalescing.write(b"data: first\n\n")
    assert sent == []  # held for the rest of this step
    await asyncio.sleep(0)
    assert sent == [b"data: first\n\n"]
    coalescing.write(b"data: last\n\n")
    coalescing.close()  # what is held goes out before the connection closes
    assert sent == [b"data: first\n\n", b"data: last\n\n"]
    assert await _received(theirs, 25) == b"data: first\n\ndata: last\n\n"
    assert coalescing.is_closing()  # everything else is the transport's own
    theirs.close()
