"""The protocol marks a request whose whole body came with its headers, so the body is
read without arming a deadline; a body still arriving is read under the deadline."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import uvicorn

from legato.server._conn import BODY_COMPLETE, ConnectionGuard, protocol_factory


@contextmanager
def serving(app: Callable[..., object], http: str) -> Iterator[int]:
    guard = ConnectionGuard(header_timeout_s=5, max_connections_per_client=0)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", http=protocol_factory(http, guard)
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        thread.join(0.01)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(30)


def exchange(port: int, parts: list[bytes]) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        for i, part in enumerate(parts):
            if i:
                time.sleep(0.2)  # the rest arrives later, in its own read
            s.sendall(part)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.endswith(b"!"):
            data = s.recv(65536)
            if not data:
                break
            answer += data
        return answer


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_a_body_that_came_with_its_headers_is_marked_complete(http: str) -> None:
    seen: list[tuple[object, bytes]] = []

    async def app(
        scope: dict[str, object], receive: Callable[[], object], send: Callable[[dict[str, object]], object]
    ) -> None:
        flag = scope["state"].get(BODY_COMPLETE)  # type: ignore[attr-defined]
        body = b""
        while True:
            message = await receive()  # type: ignore[misc]
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        seen.append((flag, body))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1")]})  # type: ignore[misc]
        await send({"type": "http.response.body", "body": b"!"})  # type: ignore[misc]

    head = b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: 5\r\n\r\n"
    with serving(app, http) as port:
        assert exchange(port, [head + b"hello"]).startswith(b"HTTP/1.1 200")
        assert exchange(port, [head, b"world"]).startswith(b"HTTP/1.1 200")
    assert seen == [(True, b"hello"), (None, b"world")]
