"""The lean HTTP/1.1 wire against real loopback servers: framing in any split, the pool
(reuse, caps, expiry, what is never pooled), timeouts, cancellation, compression, TLS,
cookies, the errors it raises and the choice of the aiohttp wire behind a proxy."""

from __future__ import annotations

import asyncio
import datetime
import gzip
import ipaddress
import json
import socket
import ssl
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from legato import errors
from legato.providers import ChatRequest, Message, OpenAIModel
from legato.providers._errors import from_transport
from legato.providers._h1 import ConnectError, Disconnected, LeanWire, PoolTimeout, ProtocolError, ReadTimeout
from legato.providers._transport import SSL_CONTEXT, AiohttpWire, Settings, Wire

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
REQ = ChatRequest(messages=[Message(role="user", content="hi")], max_tokens=4)
ANSWER = json.dumps(
    {
        "id": "c1",
        "object": "chat.completion",
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
).encode()


def settings(url: str, **kw: Any) -> Settings:
    base: dict[str, Any] = {
        "base_url": url,
        "headers": {"authorization": "Bearer sk", "x-team": "a"},
        "connect_timeout": 5.0,
        "read_timeout": 5.0,
        "write_timeout": 5.0,
        "pool_timeout": 5.0,
        "max_connections": 10,
        "max_keepalive_connections": 10,
        "keepalive_expiry": 30.0,
    }
    return Settings(**{**base, **kw})


class Server:
    """A loopback HTTP server run by a handler per connection; counts the connections."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.accepts = 0
        self.closed_by_client = 0  # connections the client closed (EOF seen while reading)
        self.heads: list[dict[str, str]] = []
        self.lines: list[str] = []
        self.tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Server:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.wait_closed()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepts += 1
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)  # type: ignore[arg-type]
        try:
            await self.handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed_by_client += 1
        except asyncio.CancelledError:
            pass
        finally:
            writer.close()

    async def request(self, reader: asyncio.StreamReader) -> bytes:
        """Read one request; record its head; return its body (IncompleteReadError at EOF)."""
        raw = await reader.readuntil(b"\r\n\r\n")
        lines = raw.decode().split("\r\n")[:-2]
        self.lines.append(lines[0])
        head = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        self.heads.append(head)
        return await reader.readexactly(int(head.get("content-length", "0")))


def response(body: bytes = ANSWER, *, status: str = "200 OK", headers: str = "") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n{headers}\r\n".encode()
        + body
    )


def chunked(body: bytes, *, piece: int = 5, headers: str = "") -> bytes:
    out = f"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n{headers}\r\n".encode()
    for i in range(0, len(body), piece):
        part = body[i : i + piece]
        out += b"%x\r\n%s\r\n" % (len(part), part)
    return out + b"0\r\n\r\n"


def keep_alive(answer: bytes) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await server_of[handler].request(reader)
            writer.write(answer)
            await writer.drain()

    return handler


server_of: dict[Any, Server] = {}


@asynccontextmanager
async def serving(handler: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    server = Server(handler, tls)
    server_of[handler] = server
    try:
        async with server:
            yield server
    finally:
        del server_of[handler]


@asynccontextmanager
async def lean(s: Settings) -> AsyncIterator[LeanWire]:
    wire = LeanWire(s)
    try:
        yield wire
    finally:
        await wire.aclose()


async def read_stream(wire: Wire, path: str = "chat") -> tuple[int, bytes]:
    async with wire.stream(path, b"{}", None) as (head, chunks):
        return head.status, b"".join([c async for c in chunks])


async def read_into(wire: Wire, got: list[bytes]) -> None:
    async with wire.stream("chat", b"{}", None) as (_, chunks):
        async for chunk in chunks:
            got.append(chunk)


async def drain(chunks: AsyncIterator[Any], got: list[Any]) -> None:
    async for chunk in chunks:
        got.append(chunk.text)


# ---------------------------------------------------------------- framing


@pytest.mark.parametrize("piece", [1, 2, 3, 7, 64])
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_response_in_any_split_reads_the_same(piece: int, framing: str) -> None:
    body = b'data: {"a": "\xc3\xa9"}\n\n' * 5
    answer = response(body, headers="x-request-id: r-1\r\n") if framing == "content-length" else chunked(body, piece=3)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(2):
            await server.request(reader)
            for i in range(0, len(answer), piece):
                writer.write(answer[i : i + piece])
                await writer.drain()
                await asyncio.sleep(0.001 if piece < 7 else 0)

    async with serving(handler) as server, lean(settings(server.url)) as wire:
        head, got = await wire.post("chat", b"{}", None)
        assert (head.status, got) == (200, body)
        if framing == "content-length":
            assert head.headers.get("X-Request-Id") == head.headers["x-request-id"] == "r-1"
            assert "Content-Length" in head.headers
        assert await read_stream(wire) == (200, body)
    assert server.accepts == 1


async def test_informational_answers_are_skipped() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await server.request(reader)
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n" + response())

    async with serving(handler) as server, lean(settings(server.url)) as wire:
        for _ in range(2):
            head, body = await wire.post("chat", b"{}", None)
            assert (head.status, body) == (200, ANSWER)
            assert "link" not in head.headers
    assert server.accepts == 1


async def test_a_body_until_close_is_read_and_its_connection_not_reused() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n" + ANSWER[:10])
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(ANSWER[10:])

    async with serving(handler) as server, lean(settings(server.url)) as wire:
        assert await wire.post("chat", b"{}", None) == (await wire.post("chat", b"{}", None))
        _head, body = await wire.post("chat", b"{}", None)
        assert body == ANSWER
    assert server.accepts == 3


# ---------------------------------------------------------------- the pool


async def test_sequential_calls_share_one_connection() -> None:
    async with serving(keep_alive(response())) as server, lean(settings(server.url)) as wire:
        for _ in range(20):
            assert (await wire.post("chat/completions", b"{}", None))[1] == ANSWER
        for _ in range(5):
            assert await read_stream(wire) == (200, ANSWER)
    assert server.accepts == 1
    assert server.lines[0] == "POST /v1/chat/completions HTTP/1.1"


async def test_a_connection_the_server_closed_is_not_reused() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.request(reader)
        writer.write(response())  # keep-alive on the wire, then closed while idle
        await writer.drain()

    async with serving(handler) as server, lean(settings(server.url)) as wire:
        await wire.post("chat", b"{}", None)
        await asyncio.sleep(0.05)
        _head, body = await wire.post("chat", b"{}", None)
        assert body == ANSWER
    assert server.accepts == 2


async def test_connection_close_is_honoured() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.request(reader)
        writer.write(response(headers="connection: close\r\n"))
        await writer.drain()
        await asyncio.sleep(1)  # the client must not wait for this close to reconnect

    async with serving(handler) as server, lean(settings(server.url)) as wire:
        with anyio.fail_after(0.8):
            for _ in range(3):
                await wire.post("chat", b"{}", None)
    assert server.accepts == 3


async def test_idle_connections_expire() -> None:
    async with serving(keep_alive(response())) as server, lean(settings(server.url, keepalive_expiry=0.1)) as wire:
        await wire.post("chat", b"{}", None)
        await asyncio.sleep(0.3)
        assert server.closed_by_client == 1  # the sweep closed it, no call needed
        await wire.post("chat", b"{}", None)
    assert server.accepts == 2


async def test_the_pool_cap_makes_callers_wait_then_pool_timeout_fires() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await server.request(reader)
            await asyncio.sleep(0.15)
            writer.write(response())

    async with serving(handler) as server, lean(settings(server.url, max_connections=1)) as wire:
        results = await asyncio.gather(*(wire.post("chat", b"{}", None) for _ in range(3)))
        assert [body for _, body in results] == [ANSWER] * 3
        assert server.accepts == 1  # the waiters were handed the one connection in turn

    async with serving(handler) as server, lean(settings(server.url, max_connections=1, pool_timeout=0.05)) as wire:
        first = asyncio.ensure_future(wire.post("chat", b"{}", None))
        await asyncio.sleep(0.02)
        with pytest.raises(PoolTimeout) as info:
            await wire.post("chat", b"{}", None)
        assert type(from_transport(info.value, provider="p", model="m")) is errors.ProviderTimeout
        assert (await first)[1] == ANSWER
        assert (await wire.post("chat", b"{}", None))[1] == ANSWER  # the slot came back
    assert server.accepts == 1


async def test_a_stream_closed_early_is_not_pooled() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await server.request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.write(b"4\r\nlast\r\n0\r\n\r\n")

    async with serving(handler) as server, lean(settings(server.url)) as wire:
        async with wire.stream("chat", b"{}", None) as (_, chunks):
            assert await chunks.__anext__() == b"first"
        async with wire.stream("chat", b"{}", None) as (_, chunks):
            assert b"".join([c async for c in chunks]) == b"firstlast"
        async with wire.stream("chat", b"{}", None) as (_, chunks):
            assert b"".join([c async for c in chunks]) == b"firstlast"
        assert len(wire._conns) == 1
    assert server.accepts == 2  # a new connection after the one closed early, then reuse


async def test_cancelling_a_call_leaves_no_connection_behind() -> None:
    answered = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await server.request(reader)
            if answered.is_set():
                writer.write(response())
            else:
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")  # then nothing

    async with serving(handler) as server, lean(settings(server.url, max_connections=1)) as wire:
        with anyio.move_on_after(0.1) as scope:  # cancelled inside the body
            await wire.post("chat", b"{}", None)
        assert scope.cancelled_caught
        with anyio.move_on_after(0.1) as scope:  # cancelled waiting for the head
            async with anyio.create_task_group() as tg:
                tg.start_soon(wire.post, "chat", b"{}", None)
                tg.start_soon(wire.post, "chat", b"{}", None)  # this one waits for the pool
        assert scope.cancelled_caught
        await asyncio.sleep(0.05)
        assert (len(wire._conns), wire._total, len(wire._idle), len(wire._waiters)) == (0, 0, 0, 0)
        assert server.closed_by_client == 2
        answered.set()
        assert (await wire.post("chat", b"{}", None))[1] == ANSWER
    assert server.accepts == 3
    assert [t for t in asyncio.all_tasks() if "LeanWire" in repr(t)] == []


# ---------------------------------------------------------------- failures


async def test_a_stream_cut_mid_body_is_interrupted() -> None:
    event = b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"he"}}]}\n\n'

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.request(reader)
        writer.write(chunked(event)[:-5])  # the body's end never comes
        await writer.drain()

    async with serving(handler) as server:
        model = OpenAIModel("m", base_url=server.url, api_key="sk")
        got: list[str] = []
        with pytest.raises(errors.StreamInterrupted) as info:
            await drain(model.stream(REQ), got)
        await model.aclose()
    assert got == ["he"]
    assert not info.value.retryable  # content was delivered
    assert isinstance(info.value.__cause__, Disconnected)


async def test_a_body_cut_before_its_length_fails_the_call() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.request(reader)
        writer.write(response()[:-10])

    async with serving(handler) as server:
        model = OpenAIModel("m", base_url=server.url, api_key="sk")
        with pytest.raises(errors.ConnectionFailed) as info:
            await model.chat(REQ)
        await model.aclose()
    assert isinstance(info.value.__cause__, Disconnected)


@pytest.mark.usefixtures("each_wire")
@pytest.mark.parametrize("streaming", [False, True])
async def test_a_malformed_response_fails_as_with_aiohttp(streaming: bool) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nbad header line\r\n\r\nhello")

    async with serving(handler) as server:
        model = OpenAIModel("m", base_url=server.url, api_key="sk")
        with pytest.raises(errors.ModelError) as info:
            await (drain(model.stream(REQ), []) if streaming else model.chat(REQ))
        await model.aclose()
    assert type(info.value) is (errors.StreamInterrupted if streaming else errors.ConnectionFailed)


@pytest.mark.usefixtures("each_wire")
@pytest.mark.parametrize(
    "head",
    [
        b"x-big: " + b"a" * 70_000 + b"\r\n",  # one field past any sane size
        b"".join(b"x-h%d: %s\r\n" % (i, b"b" * 100) for i in range(2_000)),  # many small ones
    ],
    ids=["one huge field", "endless fields"],
)
async def test_a_response_head_past_the_limits_fails_the_call(head: bytes) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n" + head + b"\r\n{}")
        await writer.drain()

    async with serving(handler) as server:
        model = OpenAIModel("m", base_url=server.url, api_key="sk")
        with pytest.raises(errors.ConnectionFailed):
            await model.chat(REQ)
        await model.aclose()


async def test_read_timeout_between_bytes() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for _ in range(3):  # bytes keep coming inside the timeout: no timeout yet
            await asyncio.sleep(0.06)
            writer.write(b"1\r\na\r\n")
        await asyncio.sleep(5)

    async with serving(handler) as server, lean(settings(server.url, read_timeout=0.15)) as wire:
        got: list[bytes] = []
        with pytest.raises(ReadTimeout) as info:
            await read_into(wire, got)
        assert got == [b"a"] * 3
        assert type(from_transport(info.value, provider="p", model="m", streaming=True)) is errors.ProviderTimeout
        assert wire._total == 0


async def test_read_timeout_waiting_for_the_answer() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.request(reader)
        await asyncio.sleep(5)

    async with serving(handler) as server:
        model = OpenAIModel("m", base_url=server.url, api_key="sk")
        from legato.providers import HttpOptions

        model.options = HttpOptions(read_timeout=0.1)
        with anyio.fail_after(2), pytest.raises(errors.ProviderTimeout) as info:
            await model.chat(REQ)
        await model.aclose()
    assert isinstance(info.value.__cause__, ReadTimeout)


async def test_connect_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    model = OpenAIModel("m", base_url=f"http://127.0.0.1:{port}/v1", api_key="sk")
    with pytest.raises(errors.ConnectionFailed) as info:
        await model.chat(REQ)
    with pytest.raises(errors.ConnectionFailed):
        async for _ in model.stream(REQ):
            pass
    await model.aclose()
    assert isinstance(info.value.__cause__, ConnectError)
    assert info.value.retryable


def test_lean_failures_translate_as_their_aiohttp_equivalents() -> None:
    table = {
        (ConnectError("refused"), False): errors.ConnectionFailed,
        (ReadTimeout("slow"), True): errors.ProviderTimeout,
        (PoolTimeout("full"), False): errors.ProviderTimeout,
        (Disconnected("cut"), False): errors.ConnectionFailed,
        (Disconnected("cut"), True): errors.StreamInterrupted,
        (ProtocolError("bad"), False): errors.ConnectionFailed,
        (ProtocolError("bad"), True): errors.StreamInterrupted,
    }
    for (exc, streaming), cls in table.items():
        assert type(from_transport(exc, provider="p", model="m", streaming=streaming)) is cls


# ---------------------------------------------------------------- content


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate"])
async def test_compressed_bodies_are_decoded(encoding: str) -> None:
    if encoding == "gzip":
        packed = gzip.compress(ANSWER)
    elif encoding == "deflate":
        packed = zlib.compress(ANSWER)
    else:
        c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        packed = c.compress(ANSWER) + c.flush()
    name = "deflate" if encoding == "raw-deflate" else encoding
    answers = [
        response(packed, headers=f"content-encoding: {name}\r\n"),
        chunked(packed, piece=7, headers=f"content-encoding: {name}\r\n"),
    ]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for answer in answers * 2:
            await server.request(reader)
            writer.write(answer)

    async with serving(handler) as server, lean(settings(server.url)) as wire:
        assert (await wire.post("chat", b"{}", None))[1] == ANSWER
        assert (await wire.post("chat", b"{}", None))[1] == ANSWER
        assert await read_stream(wire) == (200, ANSWER)
        assert await read_stream(wire) == (200, ANSWER)
    assert server.heads[0]["accept-encoding"] == "gzip, deflate"


async def test_a_body_that_does_not_decode_fails() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.request(reader)
        writer.write(response(b"not gzip at all", headers="content-encoding: gzip\r\n"))

    async with serving(handler) as server, lean(settings(server.url)) as wire:
        with pytest.raises(ProtocolError):
            await wire.post("chat", b"{}", None)


@pytest.mark.parametrize("kind", ["lean", "aiohttp"])
async def test_both_wires_send_the_same_request(kind: str) -> None:
    async with serving(keep_alive(response())) as server:
        wire: Wire = LeanWire(settings(server.url)) if kind == "lean" else AiohttpWire(settings(server.url))
        big = b'{"x":"' + b"y" * 100_000 + b'"}'
        await wire.post("chat/completions", b'{"a":1}', {"traceparent": "00-1-2-01"})
        await wire.post("chat/completions", big, None)
        await read_stream(wire, "embeddings?api-version=1")
        await wire.aclose()
    assert server.lines == [
        "POST /v1/chat/completions HTTP/1.1",
        "POST /v1/chat/completions HTTP/1.1",
        "POST /v1/embeddings?api-version=1 HTTP/1.1",
    ]
    expected = {
        "host": f"127.0.0.1:{server.port}",
        "user-agent": "legato/" + __import__("legato").__version__,
        "accept": "*/*",
        "accept-encoding": "gzip, deflate",
        "content-type": "application/json",
        "authorization": "Bearer sk",
        "x-team": "a",
        "content-length": "7",
        "traceparent": "00-1-2-01",
    }
    assert server.heads[0] == expected
    assert server.heads[1] == {
        **{k: v for k, v in expected.items() if k != "traceparent"},
        "content-length": str(len(big)),
    }


async def test_a_header_with_a_line_break_is_refused() -> None:
    async with serving(keep_alive(response())) as server, lean(settings(server.url)) as wire:
        from legato.providers._h1 import InvalidRequest

        with pytest.raises(InvalidRequest):
            await wire.post("chat", b"{}", {"traceparent": "x\r\nevil: 1"})
        assert (await wire.post("chat", b"{}", None))[1] == ANSWER
    assert "evil" not in server.heads[0]


@pytest.mark.parametrize("kind", ["lean", "aiohttp"])
async def test_cookies_the_origin_sets_are_sent_back(kind: str) -> None:
    answers = [
        response(headers="set-cookie: session=abc; Path=/v1; Max-Age=60\r\nset-cookie: other=x; Path=/elsewhere\r\n"),
        response(headers="set-cookie: gone=1; Path=/\r\n"),
        response(headers="set-cookie: gone=; Path=/; Max-Age=0\r\n"),
        response(),
    ]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for answer in answers:
            await server.request(reader)
            writer.write(answer)

    async with serving(handler) as server:
        url = f"http://localhost:{server.port}/v1"  # aiohttp keeps no cookies of an IP address
        wire: Wire = LeanWire(settings(url)) if kind == "lean" else AiohttpWire(settings(url))
        for _ in answers:
            await wire.post("chat", b"{}", None)
        await wire.aclose()
    cookies = [sorted(head["cookie"].split("; ")) if "cookie" in head else None for head in server.heads]
    assert cookies == [None, ["session=abc"], ["gone=1", "session=abc"], ["session=abc"]]


# ---------------------------------------------------------------- TLS


def _certificates(tmp: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for localhost and 127.0.0.1, and a client context trusting it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "legato test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp / "cert.pem", tmp / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    return server, client


async def test_tls_with_the_shared_trust_store_and_sni(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server_tls, client_tls = _certificates(tmp_path)
    names: list[str | None] = []
    server_tls.sni_callback = lambda _sock, name, _ctx: names.append(name)  # type: ignore[assignment,func-returns-value]
    async with serving(keep_alive(response()), tls=server_tls) as server:
        url = f"https://localhost:{server.port}/v1"
        monkeypatch.delitem(SSL_CONTEXT, "default", raising=False)
        async with lean(settings(url)) as wire:  # the system trust store does not know this certificate
            with pytest.raises(ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await wire.post("chat", b"{}", None)
        monkeypatch.setitem(SSL_CONTEXT, "default", client_tls)
        async with lean(settings(url)) as wire:
            for _ in range(3):
                assert (await wire.post("chat", b"{}", None))[1] == ANSWER
            assert await read_stream(wire) == (200, ANSWER)
    assert names == ["localhost", "localhost"]
    assert server.accepts == 1  # the refused handshake never reached the server's handler
    assert server.heads[0]["host"] == f"localhost:{server.port}"


# ---------------------------------------------------------------- the choice of wire


def _env(monkeypatch: pytest.MonkeyPatch, proxy: str | None, no_proxy: str | None = None) -> None:
    for name in (
        "NO_PROXY",
        "no_proxy",
        "ALL_PROXY",
        "all_proxy",
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
    ):
        monkeypatch.delenv(name, raising=False)
    if proxy is not None:
        monkeypatch.setenv("HTTP_PROXY", proxy)
    if no_proxy is not None:
        monkeypatch.setenv("NO_PROXY", no_proxy)


@pytest.mark.parametrize(
    ("proxy", "no_proxy", "fallback"),
    [(None, None, False), ("http://127.0.0.1:9", None, True), ("http://127.0.0.1:9", "127.0.0.1", False)],
)
async def test_an_environment_proxy_selects_the_aiohttp_wire(
    monkeypatch: pytest.MonkeyPatch, proxy: str | None, no_proxy: str | None, fallback: bool
) -> None:
    _env(monkeypatch, proxy, no_proxy)
    async with serving(keep_alive(response())) as server:
        model = OpenAIModel("m", base_url=server.url, api_key="sk")
        try:
            if fallback:
                with pytest.raises(errors.ConnectionFailed):  # port 9: the proxy is what was dialled
                    await model.chat(REQ)
            else:
                assert (await model.chat(REQ)).text == "hello"
            wire = model._http
            assert isinstance(wire, LeanWire)
            assert isinstance(wire._fallback, AiohttpWire) is fallback
        finally:
            await model.aclose()
    assert server.accepts == (0 if fallback else 1)


async def test_a_base_url_it_does_not_handle_goes_to_aiohttp() -> None:
    model = OpenAIModel("m", base_url="ftp://127.0.0.1:1/v1", api_key="sk")
    with pytest.raises(errors.BadRequest, match="invalid URL"):  # aiohttp's own error for it
        await model.chat(REQ)
    assert isinstance(model._http, LeanWire)
    assert isinstance(model._http._fallback, AiohttpWire)
    await model.aclose()
