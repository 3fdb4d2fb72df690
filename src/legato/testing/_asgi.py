"""The fake provider's request plumbing: the request log record, routing of paths to
APIs, and small ASGI helpers. No behaviour lives here; see ``_server``."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from legato.testing import _errors as wire_errors

if TYPE_CHECKING:
    from legato.testing._script import Fault, Reply

__all__ = ["Receive", "RecordedRequest", "Responder", "Scope", "Send"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Responder = Callable[["RecordedRequest"], "Reply | Fault"]


@dataclass(slots=True)
class RecordedRequest:
    """One request the fake received, for assertions.

    ``api`` is ``openai.chat``, ``openai.embeddings``, ``anthropic.messages``,
    ``tgi.generate``, ``tgi.generate_stream``, ``hf.<task>`` or ``unknown``;
    ``body`` is the decoded JSON (None when it was not JSON); ``outcome`` is the
    status sent or the transport fault (``reset``, ``disconnect``); ``request_id``
    the id sent back in ``x-request-id`` / ``request-id``.
    """

    api: str
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    model: str | None = None
    stream: bool = False
    outcome: str = ""
    request_id: str = ""
    raw: bytes = field(default=b"", repr=False)


@dataclass(slots=True)
class Call:
    scope: Scope
    send: Send
    record: RecordedRequest
    request_id: str


def matches(api: str | None, model: str | None, rec: RecordedRequest) -> bool:
    return (api is None or rec.api.startswith(api)) and (model is None or rec.model == model)


def route(method: str, path: str) -> tuple[str, str | None, str | None]:
    """(api, model from the path, HF task) for a request path."""
    if method == "GET":
        return "get", None, None
    if path in ("/v1/chat/completions", "/chat/completions"):
        return "openai.chat", None, None
    if path in ("/v1/embeddings", "/embeddings"):
        return "openai.embeddings", None, None
    if path in ("/v1/messages", "/messages"):
        return "anthropic.messages", None, None
    if path in ("/generate", "/generate_stream"):
        return ("tgi.generate_stream" if path.endswith("_stream") else "tgi.generate"), None, None
    if path.startswith("/openai/deployments/"):  # Azure OpenAI
        rest = path.removeprefix("/openai/deployments/")
        deployment, _, op = rest.partition("/")
        if op == "chat/completions":
            return "openai.chat", deployment, None
        if op == "embeddings":
            return "openai.embeddings", deployment, None
    if "/pipeline/" in path:
        head, _, task = path.partition("/pipeline/")
        model = head.removeprefix("/hf-inference").removeprefix("/models/")
        if task in ("feature-extraction", "text-classification", "token-classification", "summarization"):
            return f"hf.{task}", model, task
    return "unknown", None, None


async def read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def encode(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


def id_headers(api: str, call: Call) -> dict[str, str]:
    if api.startswith("anthropic"):
        return {"request-id": call.request_id}
    return {"x-request-id": call.request_id}


def json_headers(api: str, call: Call) -> dict[str, str]:
    return {"content-type": "application/json", **id_headers(api, call)}


def content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def last_user_text(body: Any) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def all_text(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    if "inputs" in body:
        return str(body["inputs"])
    system = content_text(body.get("system"))
    return system + "".join(content_text(m.get("content")) for m in body.get("messages") or [] if isinstance(m, dict))


async def send_body(call: Call, status: int, headers: dict[str, str], body: bytes, reply: Reply | None) -> None:
    """A whole response with its ``content-length`` (so the body goes out in one write,
    not as chunks); ``reply.first_chunk_delay`` holds the body back after the headers."""
    headers = {"content-length": str(len(body)), **headers}
    await call.send({"type": "http.response.start", "status": status, "headers": encode(headers)})
    if reply is not None and reply.first_chunk_delay > 0:
        await call.send({"type": "http.response.body", "body": b"", "more_body": True})
        await asyncio.sleep(reply.first_chunk_delay)
    await call.send({"type": "http.response.body", "body": body})
    call.record.outcome = str(status)


async def send_stream(
    server: Any,
    call: Call,
    api: str,
    events: Iterator[bytes],
    end: bytes | None,
    reply: Reply | None,
    fault: Fault | None,
) -> None:
    headers = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
    headers.update(id_headers(api, call))
    await call.send({"type": "http.response.start", "status": 200, "headers": encode(headers)})
    call.record.outcome = "200"
    first_delay = reply.first_chunk_delay if reply else 0.0
    chunk_delay = reply.chunk_delay if reply else 0.0
    limit = fault.after_chunks if fault else None
    if first_delay > 0:
        await call.send({"type": "http.response.body", "body": b"", "more_body": True})
        await asyncio.sleep(first_delay)
    for sent, event in enumerate(events):
        if limit is not None and sent >= limit:
            break
        if sent and chunk_delay > 0:
            await asyncio.sleep(chunk_delay)
        await call.send({"type": "http.response.body", "body": event, "more_body": True})
    tail = end
    if fault is not None:
        model = call.record.model or "fake-model"
        if fault.kind == "disconnect":
            await abort_connection(server, call, reset=False)
            call.record.outcome = "disconnect"
            return
        if fault.kind == "stream_error":
            tail = wire_errors.stream_error_event(api, fault.error, model=model, request_id=call.request_id)
        elif fault.kind == "malformed":
            tail = b'data: {"choices": [{"delta": {"content": "x"\n\n'
        else:  # truncate
            tail = None
    await call.send({"type": "http.response.body", "body": tail or b"", "more_body": False})


async def abort_connection(server: Any, call: Call, *, reset: bool) -> None:
    """Close the request's TCP connection mid-response (``reset``: with RST)."""
    client = call.scope.get("client")
    if server is not None:
        for conn in list(server.server_state.connections):
            if tuple(getattr(conn, "client", None) or ()) == tuple(client or ()):
                transport = conn.transport
                sock = transport.get_extra_info("socket")
                if reset and sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                transport.abort()
                break
    # Let uvicorn see the connection loss before the ASGI call returns.
    for _ in range(3):
        await asyncio.sleep(0)
