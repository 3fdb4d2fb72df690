"""Slow and idle clients against a real ``legato serve``: keyless drip-feed floods,
keyed bodies that stall, headers that never finish, idle keep-alive sockets and one
address opening too many connections. None of them may cost another client its
request, and every stalled socket is answered (408) or closed by the server.

Raw sockets (anyio) rather than an HTTP client: the point is to send less than a
whole request. Floods come from several loopback addresses (127.0.1.x), as they
would from many hosts; the keyed client is 127.0.0.1.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import anyio
import httpx
import pytest
from anyio.abc import SocketStream

from _serve import ServeProcess
from legato.testing import FakeProvider

pytestmark = pytest.mark.slow

HEADER_TIMEOUT, BODY_TIMEOUT, IDLE_TIMEOUT, PER_CLIENT = 3, 2, 1, 16

CONFIG = f"""\
models:
  gpt-fake:
    provider: openai
    model: gpt-fake
    base_url: "{{base_url}}"
    api_key: env:SECURITY_FAKE_KEY
server:
  master_key: env:SECURITY_MASTER_KEY
  max_in_flight: 4
  header_timeout_s: {HEADER_TIMEOUT}
  body_timeout_s: {BODY_TIMEOUT}
  idle_timeout_s: {IDLE_TIMEOUT}
  max_connections_per_client: {PER_CLIENT}
"""

CHAT = {"model": "gpt-fake", "messages": [{"role": "user", "content": "still served"}]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServeProcess, str]]:
    tmp = tmp_path_factory.mktemp("slow-clients")
    with FakeProvider(seed=0).in_thread() as fake:
        (tmp / "legato.yaml").write_text(CONFIG.format(base_url=fake.openai_base_url))
        proc = ServeProcess(tmp / "legato.yaml", "--database-url", f"sqlite:///{tmp / 'gateway.db'}")
        try:
            proc.wait_ready()
            yield proc, proc.create_key(["chat"])
        finally:
            proc.stop()


def head(path: str, length: int, key: str | None = None) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: gateway", "Content-Type: application/json", f"Content-Length: {length}"]
    if key:
        lines.append(f"Authorization: Bearer {key}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def connect(proc: ServeProcess, source: str = "127.0.0.1") -> SocketStream:
    return await anyio.connect_tcp("127.0.0.1", proc.port, local_host=source)


async def answer(stream: SocketStream) -> tuple[int, bytes]:
    """Read until the server closes the socket; the status and the body of its one response.
    Bounded: a server that neither answers nor closes fails the test instead of hanging it."""
    data = b""
    with anyio.fail_after(HEADER_TIMEOUT + BODY_TIMEOUT + 20):
        while True:
            try:
                data += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                break
    await stream.aclose()
    assert data, "the server closed the socket without an answer"
    return int(data[9:12]), data.split(b"\r\n\r\n", 1)[1]


async def keyed_call(proc: ServeProcess, key: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=proc.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
        return await c.post("/v1/chat/completions", json=CHAT)


async def test_keyless_drip_feed_flood_is_refused_at_once_and_keyed_requests_are_served(
    server: tuple[ServeProcess, str],
) -> None:
    """520 connections send headers without a key and start dripping a body: each is
    answered 401 and closed without the server waiting for its body; meanwhile keyed
    requests are served (before: they all got 429 "server at capacity")."""
    proc, key = server
    streams: list[SocketStream] = []
    try:
        for i in range(520):
            stream = await connect(proc, f"127.0.1.{i // 8 + 1}")
            streams.append(stream)
            await stream.send(head("/v1/chat/completions", 100_000) + b'{"model": "gpt')
        for _ in range(3):
            r = await keyed_call(proc, key)
            assert r.status_code == 200, r.text
            assert r.json()["choices"][0]["message"]["content"] == "still served"
        answers = [await answer(s) for s in streams]
    finally:
        for s in streams:
            await s.aclose()
    assert {status for status, _ in answers} == {401}
    assert json.loads(answers[0][1])["error"]["code"] == "invalid_api_key"


async def test_keyed_bodies_that_stall_hold_no_slot_and_get_408(server: tuple[ServeProcess, str]) -> None:
    """Three times ``max_in_flight`` keyed requests whose bodies stop arriving: a normal
    request is still served, and each stalled one is answered 408 and closed."""
    proc, key = server
    stalled = []
    for _ in range(12):
        stream = await connect(proc, "127.0.0.3")
        await stream.send(head("/v1/chat/completions", 1_000, key) + b'{"model": "gpt-fake", ')
        stalled.append(stream)
    r = await keyed_call(proc, key)
    assert r.status_code == 200, r.text
    answers = [await answer(s) for s in stalled]
    assert {status for status, _ in answers} == {408}
    error = json.loads(answers[0][1])["error"]
    assert error["code"] == "request_timeout"
    assert f"{BODY_TIMEOUT}s" in error["message"]


async def test_a_wrong_key_is_refused_before_the_body(server: tuple[ServeProcess, str]) -> None:
    """A declared 100 kB body that never comes: 401 (not 408 after the body deadline)."""
    proc, _ = server
    stream = await connect(proc)
    await stream.send(head("/v1/chat/completions", 100_000, "lg_not_a_real_key_at_all"))
    status, body = await answer(stream)
    assert status == 401
    assert json.loads(body)["error"]["type"] == "authentication_error"


async def test_headers_that_never_finish_and_silent_connections_get_408(server: tuple[ServeProcess, str]) -> None:
    proc, _ = server
    partial = await connect(proc)
    await partial.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nX-Slow: ")
    silent = await connect(proc)
    for stream in (partial, silent):
        status, body = await answer(stream)
        assert status == 408
        assert json.loads(body)["error"]["code"] == "request_timeout"


async def test_an_idle_kept_alive_connection_is_closed(server: tuple[ServeProcess, str]) -> None:
    proc, _ = server
    stream = await connect(proc)
    await stream.send(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
    status, body = await answer(stream)  # answered, then closed once idle
    assert status == 200
    assert json.loads(body)["status"] == "ok"


async def test_one_address_cannot_hold_more_than_its_share_of_connections(server: tuple[ServeProcess, str]) -> None:
    proc, key = server
    held = [await connect(proc, "127.0.0.9") for _ in range(PER_CLIENT)]
    try:
        extra = await connect(proc, "127.0.0.9")
        status, body = await answer(extra)
        assert status == 429
        assert json.loads(body)["error"]["code"] == "too_many_connections"
        r = await keyed_call(proc, key)  # another address is unaffected
        assert r.status_code == 200
    finally:
        for stream in held:
            await stream.aclose()
