"""Load shedding against a real ``legato serve``: while admission is saturated, a model
call with a valid key is refused with 429 before its body is read (at header time on
the httptools protocol), in the route's wire format, on a connection that stays usable;
a call without a valid key still gets 401 and one without the route's scope 403, so
neither takes part in admission."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from anyio.abc import SocketStream

from _serve import MASTER
from legato.testing import FakeProvider, Reply

from .conftest import ServedGateway

SATURATED = "  admission: {initial_limit: 1, min_limit: 1, max_limit: 1, queue: 0}"
CHAT = {"model": "gpt-fake", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def saturated(tmp_path: Path) -> Iterator[tuple[ServedGateway, FakeProvider]]:
    """A gateway admitting one model call at once, with that one call in flight."""
    release = threading.Event()

    def slow(_: object) -> Reply:
        release.wait(60)
        return Reply(text="done")

    with FakeProvider(seed=0).in_thread() as fake:
        fake.responder = slow
        gateway = ServedGateway(tmp_path, fake, extra=SATURATED)
        caller: threading.Thread | None = None
        try:
            gateway.wait_ready()

            def occupy() -> None:
                with gateway.client(MASTER) as c:
                    assert c.post("/v1/chat/completions", json=CHAT).status_code == 200

            caller = threading.Thread(target=occupy)
            caller.start()
            while not fake.requests:
                caller.join(0.01)
            yield gateway, fake
        finally:
            release.set()
            if caller is not None:
                caller.join(60)
            gateway.stop()


async def exchange(stream: SocketStream, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send one request on a kept-alive connection; its status, headers and body."""
    await stream.send(request)
    data = b""
    with anyio.fail_after(30):
        while b"\r\n\r\n" not in data:
            data += await stream.receive()
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        while len(body) < int(headers["content-length"]):
            body += await stream.receive()
    return int(lines[0][9:12]), headers, body


def headers_only(path: str, key: str | None, length: int = 100_000, **extra: str) -> bytes:
    """A request whose headers announce a body that is never sent."""
    lines = [f"POST {path} HTTP/1.1", "Host: gateway", "Content-Type: application/json", f"Content-Length: {length}"]
    lines += [f"Authorization: Bearer {key}"] if key else []
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in extra.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def test_a_saturated_gateway_refuses_keyed_model_calls_before_their_body(
    saturated: tuple[ServedGateway, FakeProvider],
) -> None:
    gateway, fake = saturated
    async with await anyio.connect_tcp("127.0.0.1", gateway.port) as stream:
        status, headers, body = await exchange(stream, headers_only("/v1/chat/completions", MASTER))
        assert status == 429
        assert headers["retry-after"] == "1"
        assert headers["x-request-id"].startswith("req_")
        error = json.loads(body)["error"]
        assert (error["type"], error["code"]) == ("rate_limit_error", "server_overloaded")
    async with await anyio.connect_tcp("127.0.0.1", gateway.port) as stream:
        payload = json.dumps(CHAT).encode()
        status, _, _ = await exchange(stream, headers_only("/v1/chat/completions", MASTER, len(payload)) + payload)
        assert status == 429
        # The same connection serves the next request: the unread body was discarded, not taken as a request.
        models = f"GET /v1/models HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {MASTER}\r\n\r\n"
        status, _, _ = await exchange(stream, models.encode())
        assert status == 200
    async with await anyio.connect_tcp("127.0.0.1", gateway.port) as stream:
        status, _, body = await exchange(stream, headers_only("/v1/messages", MASTER, anthropic_version="2023-06-01"))
        assert status == 429
        assert json.loads(body)["type"] == "error"  # Anthropic's shape on its route
        assert json.loads(body)["error"]["type"] == "rate_limit_error"
    assert len(fake.requests) == 1  # only the call holding the slot reached the provider
    with gateway.client() as c:
        metrics = c.get("/metrics").text
    assert 'route="/v1/chat/completions",status="429"' in metrics
    assert 'route="/v1/messages",status="429"' in metrics


async def test_keys_the_replica_must_look_up_are_refused_the_same_way(
    saturated: tuple[ServedGateway, FakeProvider],
) -> None:
    gateway, _ = saturated
    chat = gateway.create_key(["chat"])  # key_cache_ttl_s 0: checked against the store each time
    async with await anyio.connect_tcp("127.0.0.1", gateway.port) as stream:
        status, headers, body = await exchange(stream, headers_only("/v1/chat/completions", chat))
        assert status == 429
        assert json.loads(body)["error"]["code"] == "server_overloaded"
        assert "x-request-id" in headers


async def test_callers_without_a_valid_key_or_scope_are_not_admitted_or_shed(
    saturated: tuple[ServedGateway, FakeProvider],
) -> None:
    gateway, _ = saturated
    embed_only = gateway.create_key(["embed"])
    with gateway.client(MASTER) as c:
        before = c.get("/readyz").json()["checks"]["admission"]["rejected"]
    for key, expected in ((None, 401), ("lg_" + "x" * 40, 401), (embed_only, 403)):
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as c:
            auth = {"Authorization": f"Bearer {key}"} if key else {}
            r = await c.post("/v1/chat/completions", json=CHAT, headers=auth)
        assert r.status_code == expected, (key, r.text)
    with gateway.client(MASTER) as c:
        assert c.get("/readyz").json()["checks"]["admission"]["rejected"] == before


async def test_refusals_keep_http_semantics(saturated: tuple[ServedGateway, FakeProvider]) -> None:
    """The protocol writes a refusal itself: a client that asked to close gets the 429
    and a closed connection; a refusal pipelined with the next request answers both, in
    order; the server's date header is on it."""
    gateway, _ = saturated
    async with await anyio.connect_tcp("127.0.0.1", gateway.port) as stream:
        status, headers, _ = await exchange(stream, headers_only("/v1/chat/completions", MASTER, connection="close"))
        assert (status, headers["connection"]) == (429, "close")
        assert "date" in headers
        with anyio.fail_after(10), pytest.raises(anyio.EndOfStream):
            await stream.receive()
    payload = json.dumps(CHAT).encode()
    models = f"GET /v1/models HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {MASTER}\r\n\r\n".encode()
    async with await anyio.connect_tcp("127.0.0.1", gateway.port) as stream:
        await stream.send(headers_only("/v1/chat/completions", MASTER, len(payload)) + payload + models)
        data = b""
        with anyio.fail_after(30):
            while len(answers := _responses(data)) < 2:
                data += await stream.receive()
        assert [status for status, _ in answers] == [429, 200]
        assert json.loads(answers[0][1])["error"]["code"] == "server_overloaded"
        assert json.loads(answers[1][1])["object"] == "list"


def _responses(data: bytes) -> list[tuple[int, bytes]]:
    """The complete responses (status, body) at the start of ``data``."""
    done = []
    while b"\r\n\r\n" in data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next(
            int(v) for k, _, v in (line.partition(":") for line in lines[1:]) if k.lower() == "content-length"
        )
        if len(rest) < length:
            break
        done.append((int(lines[0][9:12]), rest[:length]))
        data = rest[length:]
    return done
