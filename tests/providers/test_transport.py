"""What the aiohttp wire puts on the network: the JSON body, the session's headers and
the proxy named by the environment (with its credentials)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from legato.errors import ConnectionFailed
from legato.providers import ChatRequest, Message, OpenAIModel
from legato.providers._transport import dumps


@pytest.mark.parametrize(
    "payload",
    [
        {"model": "m", "messages": [{"role": "user", "content": "héllo \u2028 </script> 😀"}], "max_tokens": 16},
        {"temperature": 0.7, "top_p": 1.0, "x": -0.0, "big": 1e300, "small": 1e-7, "int": 2**63 - 1},
        {"content": None, "tool_calls": [{"id": "c", "arguments": "{}"}]},  # null: the standard library's path
        {"huge": 2**70},  # beyond orjson's 64-bit integers
        {1: "non-string key"},  # the standard library writes it as "1"
        ["a", ("tuple",), True, False],
    ],
)
def test_request_bodies_are_the_standard_librarys_json(payload: Any) -> None:
    standard = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    body = dumps(payload)
    assert json.loads(body) == json.loads(standard)
    if "small" not in str(payload):  # orjson writes 1e-7 where the standard library writes 1e-07
        assert body == standard.encode()


@pytest.mark.parametrize("number", [float("nan"), float("inf"), -float("inf")])
def test_numbers_json_cannot_carry_are_refused(number: float) -> None:
    with pytest.raises(ValueError, match="Out of range float"):
        dumps({"tools": [{"parameters": {"default": number}}]})


def test_text_that_is_not_unicode_is_refused() -> None:
    with pytest.raises(UnicodeEncodeError):
        dumps({"messages": [{"content": "bad \ud800"}]})


_ANSWER = json.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "via proxy"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }
).encode()


class _Proxy:
    """A forward proxy on loopback that answers every request itself and keeps their heads."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.heads: list[list[str]] = []
        self.bodies: list[bytes] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")[:-2]:
                self.heads.append(head)
                fields = _fields(head)
                self.bodies.append(await reader.readexactly(int(fields.get("content-length", "0"))))
                writer.write(self.answer)
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()


def _fields(head: list[str]) -> dict[str, str]:
    return {k.lower(): v.strip() for k, v in (h.split(":", 1) for h in head[1:])}


def _use_proxy(monkeypatch: pytest.MonkeyPatch, port: int) -> None:
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(name, f"http://user:secret@127.0.0.1:{port}")


async def test_the_environment_proxy_carries_every_call_with_its_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = _Proxy(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(_ANSWER), _ANSWER)
    )
    server = await asyncio.start_server(proxy.serve, "127.0.0.1", 0)
    _use_proxy(monkeypatch, server.sockets[0].getsockname()[1])
    # provider.invalid never resolves: only the proxy can answer
    model = OpenAIModel("gpt-4o-mini", base_url="http://provider.invalid/v1", api_key="sk-x", headers={"x-team": "a"})
    try:
        request = ChatRequest(messages=[Message(role="user", content="hi")], max_tokens=4)
        for _ in range(2):
            response = await model.chat(request)
            assert response.text == "via proxy"
            assert response.usage.output_tokens == 2
    finally:
        await model.aclose()
        server.close()
        await server.wait_closed()
    assert len(proxy.heads) == 2
    for head in proxy.heads:
        assert head[0] == "POST http://provider.invalid/v1/chat/completions HTTP/1.1"
        fields = _fields(head)
        assert fields["proxy-authorization"] == "Basic dXNlcjpzZWNyZXQ="  # user:secret
        assert fields["authorization"] == "Bearer sk-x"
        assert fields["content-type"] == "application/json"
        assert fields["x-team"] == "a"
        assert "traceparent" not in fields
    assert json.loads(proxy.bodies[0]) == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 4,
    }


async def test_a_tunnel_through_the_proxy_carries_its_credentials_and_not_the_api_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy = _Proxy(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
    server = await asyncio.start_server(proxy.serve, "127.0.0.1", 0)
    _use_proxy(monkeypatch, server.sockets[0].getsockname()[1])
    model = OpenAIModel("gpt-4o-mini", base_url="https://provider.invalid/v1", api_key="sk-x")
    try:
        with pytest.raises(ConnectionFailed):
            await model.chat(ChatRequest(messages=[Message(role="user", content="hi")]))
    finally:
        await model.aclose()
        server.close()
        await server.wait_closed()
    [head] = proxy.heads
    assert head[0] == "CONNECT provider.invalid:443 HTTP/1.1"
    fields = _fields(head)
    assert fields["proxy-authorization"] == "Basic dXNlcjpzZWNyZXQ="
    assert "authorization" not in fields
    assert "sk-x" not in "\n".join(head)
