"""The fake provider: a real HTTP server on loopback that speaks the providers' APIs.

It is a plain ASGI callable served by uvicorn (httptools parser), started on the
caller's event loop (``async with FakeProvider() as fake``), on its own loop in a
background thread (``with FakeProvider().in_thread() as fake``) or as a process
(``legato fake-provider``). There is no web framework in between: the routes are
few and the gateway benchmarks push thousands of requests per second through it.

Faults that live below HTTP (a connection reset, a body cut half-way) need the
TCP transport, which ASGI does not expose: the fake looks up uvicorn's connection
for the request's client address and aborts it (with ``SO_LINGER`` 0 for a reset).
That touches two uvicorn attributes (``Server.server_state.connections`` and the
protocol's ``client``/``transport``); the tests of every fault pin the behaviour.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import itertools
import json
import random
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from legato.providers._types import Usage
from legato.testing import _errors as wire_errors
from legato.testing import _wire as wire
from legato.testing._asgi import (
    Call,
    Receive,
    RecordedRequest,
    Responder,
    Scope,
    Send,
    abort_connection,
    all_text,
    encode,
    id_headers,
    json_headers,
    last_user_text,
    matches,
    read_body,
    route,
    send_body,
    send_stream,
)
from legato.testing._script import Fault, FaultRule, Latency, Reply, Script, ScriptItem

__all__ = ["FakeProvider", "RecordedRequest"]


class FakeProvider:
    """A fake OpenAI / Anthropic / TGI / Hugging Face server with fault injection.

    Args:
        host, port: where to listen (port 0 picks a free port; see ``base_url``).
        seed: seeds the random generator of latency and probabilistic faults.
        latency: a :class:`Latency` sampled before every response.
        default: the :class:`Reply` used when no script item or fault applies.
        api_key: when set, requests without this key get the API's own 401.
        embedding_dims: length of generated embedding vectors.
        responder: ``fn(RecordedRequest) -> Reply | Fault`` used instead of ``default``.
        max_records: how many requests ``requests`` keeps (oldest dropped first).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int | None = None,
        latency: Latency | None = None,
        default: Reply | None = None,
        api_key: str | None = None,
        embedding_dims: int = 16,
        responder: Responder | None = None,
        max_records: int = 100_000,
    ) -> None:
        self.host = host
        self.port = port
        self.latency = latency
        self.default = default or Reply()
        self.api_key = api_key
        self.embedding_dims = embedding_dims
        self.responder = responder
        self._rng = random.Random(seed)
        self._records: collections.deque[RecordedRequest] = collections.deque(maxlen=max_records)
        self._queue: list[ScriptItem] = []
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server: Any = None
        self._thread_stop: Callable[[], None] | None = None

    @classmethod
    def from_script(cls, script: Script, **kwargs: Any) -> FakeProvider:
        fake = cls(seed=script.seed, latency=script.latency, default=script.default, api_key=script.api_key, **kwargs)
        fake._rules = list(script.faults)
        fake._queue = list(script.script)
        return fake

    # ------------------------------------------------------------------ addresses

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``: the Anthropic, TGI and root base URL."""
        if self._server is None:
            raise RuntimeError("the fake provider is not running; use 'async with FakeProvider() as fake'")
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """Base URL for OpenAI clients (``.../v1``)."""
        return self.base_url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.base_url

    @property
    def hf_base_url(self) -> str:
        """Base URL of the Hugging Face inference routes (``.../hf-inference``)."""
        return self.base_url + "/hf-inference"

    # ------------------------------------------------------------------ behaviour

    def script(self, *actions: Reply | Fault, api: str | None = None, model: str | None = None) -> None:
        """Queue answers for the next matching calls, consumed in order.

        ``api`` is a prefix of the API name (``openai``, ``anthropic.messages``,
        ``tgi``, ``hf``); ``model`` the requested model name.
        """
        with self._lock:
            self._queue.extend(ScriptItem(action=a, api=api, model=model) for a in actions)

    def inject(
        self, fault: Fault, probability: float = 1.0, *, api: str | None = None, model: str | None = None
    ) -> None:
        """Answer ``probability`` of the matching calls with ``fault`` (seeded draw)."""
        with self._lock:
            self._rules.append(FaultRule(fault=fault, probability=probability, api=api, model=model))

    def clear(self) -> None:
        """Forget queued script items, fault rules and recorded requests."""
        with self._lock:
            self._queue.clear()
            self._rules.clear()
            self._records.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far (oldest first)."""
        return list(self._records)

    def requests_for(self, api: str) -> list[RecordedRequest]:
        return [r for r in self._records if r.api.startswith(api)]

    @property
    def pending(self) -> int:
        """Script items not yet consumed."""
        return len(self._queue)

    def _choose(self, rec: RecordedRequest) -> Reply | Fault:
        with self._lock:
            for i, item in enumerate(self._queue):
                if matches(item.api, item.model, rec):
                    del self._queue[i]
                    return item.action
            for rule in self._rules:
                if matches(rule.api, rule.model, rec) and (
                    rule.probability >= 1.0 or self._rng.random() < rule.probability
                ):
                    return rule.fault
        if self.responder is not None:
            return self.responder(rec)
        return self.default

    def _delay(self, extra: float) -> float:
        if self.latency is None:
            return extra
        with self._lock:
            return extra + self.latency.sample(self._rng)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Bind the port and start serving on the running event loop."""
        import uvicorn

        # proto must be IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted connections
        # only then, and without it Nagle + delayed ACK hold every response ~40 ms.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self,
            lifespan="off",
            log_config=None,
            access_log=False,
            http="httptools",
            ws="none",
            server_header=False,
            date_header=False,
            backlog=4096,
            timeout_keep_alive=60,
        )
        config.load()
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=[sock])
        self._server = server

    async def stop(self) -> None:
        """Stop listening, cancel in-flight answers and close every connection."""
        server, self._server = self._server, None
        if server is None:
            return
        for srv in server.servers:
            srv.close()
        for task in list(server.server_state.tasks):
            task.cancel()
        for conn in list(server.server_state.connections):
            conn.transport.close()
        for srv in server.servers:
            await srv.wait_closed()

    async def __aenter__(self) -> FakeProvider:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @contextmanager
    def in_thread(self) -> Iterator[FakeProvider]:
        """Serve from a background thread with its own event loop (for sync code)."""
        ready = threading.Event()
        failure: list[BaseException] = []

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            self._thread_stop = lambda: (loop.call_soon_threadsafe(stop.set), None)[1]
            try:
                await self.start()
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                raise
            ready.set()
            await stop.wait()
            await self.stop()

        thread = threading.Thread(target=asyncio.run, args=(main(),), name="legato-fake-provider", daemon=True)
        thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        try:
            yield self
        finally:
            assert self._thread_stop is not None
            self._thread_stop()
            thread.join()

    # ------------------------------------------------------------------ ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        raw = await read_body(receive)
        method, path = scope["method"], scope["path"]
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        api, path_model, task = route(method, path)
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        model = path_model or (body.get("model") if isinstance(body, dict) else None)
        stream = bool(body.get("stream")) if isinstance(body, dict) else False
        if api == "tgi.generate_stream":
            stream = True
        request_id = f"req_fake{next(self._ids):012d}"
        rec = RecordedRequest(api, method, path, headers, body, model, stream, request_id=request_id, raw=raw)
        self._records.append(rec)
        call = Call(scope, send, rec, request_id)
        if method == "GET":
            await self._get(call, path)
            return
        if api == "unknown":
            await self._error(call, "openai", "not_found", status=404, message=f"Unknown request URL: POST {path}.")
            return
        problem = self._validate(api, model, body, headers)
        if problem is not None:
            kind, message = problem
            await self._error(call, api, kind, message=message)
            return
        action = self._choose(rec)
        delay = self._delay(action.delay)
        if delay > 0:
            await asyncio.sleep(delay)
        if isinstance(action, Fault):
            await self._fault(call, api, action)
            return
        await self._reply(call, api, task, action)

    def _validate(self, api: str, model: str | None, body: Any, headers: dict[str, str]) -> tuple[str, str] | None:
        if self.api_key is not None:
            sent = headers.get("x-api-key") or headers.get("api-key") or headers.get("authorization", "")
            if sent.removeprefix("Bearer ") != self.api_key:
                return "auth", ""
        if not isinstance(body, dict):
            return "bad_request", "We could not parse the JSON body of your request."
        if api in ("openai.chat", "anthropic.messages"):
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                return "bad_request", "messages: at least one message is required"
            if not model:
                return "bad_request", "you must provide a model parameter"
        if api == "anthropic.messages" and not isinstance(body.get("max_tokens"), int):
            return "bad_request", "max_tokens: Field required"
        if api == "openai.embeddings" and not body.get("input"):
            return "bad_request", "'input' is a required property"
        if api.startswith(("tgi", "hf")) and "inputs" not in body:
            return "bad_request", "Failed to deserialize the JSON body into the target type: missing field `inputs`"
        return None

    # ------------------------------------------------------------------ answers

    def _answer(self, rec: RecordedRequest, reply: Reply, prompt: str) -> wire.Answer:
        text = reply.text if reply.text is not None else prompt
        out_tokens = wire.count_tokens(text) + sum(wire.count_tokens(c.arguments) for c in reply.tool_calls)
        usage = reply.usage or Usage(
            input_tokens=max(1, wire.count_tokens(all_text(rec.body))), output_tokens=out_tokens
        )
        finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
        n = next(self._ids)
        prefix = "msg_fake" if rec.api.startswith("anthropic") else "chatcmpl-fake"
        model = reply.model or rec.model or "fake-model"
        return wire.Answer(
            f"{prefix}{n:012d}",
            model,
            text,
            tuple(reply.tool_calls),
            finish,
            usage,
            reply.chunk_chars,
            int(time.time()),
        )

    async def _reply(self, call: Call, api: str, task: str | None, reply: Reply) -> None:
        rec, body = call.record, call.record.body
        if api == "openai.embeddings":
            await self._embeddings(call, reply)
            return
        if api.startswith("hf"):
            inputs = body["inputs"]
            single = isinstance(inputs, str)
            texts = [inputs] if single else [str(t) for t in inputs]
            a = self._answer(rec, reply, "")
            payload = wire.hf_task(
                task or "feature-extraction",
                texts,
                single=single,
                a=a,
                dims=self.embedding_dims,
                labels=reply.labels,
                vectors=reply.vectors,
            )
            await send_body(call, 200, {"content-type": "application/json"}, payload, reply)
            return
        prompt = body["inputs"] if api.startswith("tgi") else last_user_text(body)
        a = self._answer(rec, reply, str(prompt))
        if api == "openai.chat":
            if rec.stream:
                include = bool((body.get("stream_options") or {}).get("include_usage"))
                await send_stream(
                    self._server, call, api, wire.openai_stream(a, include), wire.OPENAI_DONE, reply, None
                )
            else:
                await send_body(call, 200, json_headers(api, call), wire.openai_completion(a), reply)
        elif api == "anthropic.messages":
            if rec.stream:
                await send_stream(
                    self._server, call, api, wire.anthropic_stream(a), wire.ANTHROPIC_STOP_EVENT, reply, None
                )
            else:
                await send_body(call, 200, json_headers(api, call), wire.anthropic_message(a), reply)
        elif api == "tgi.generate_stream" or (api == "tgi.generate" and rec.stream):
            await send_stream(self._server, call, api, wire.tgi_stream(a), None, reply, None)
        else:
            details = bool((body.get("parameters") or {}).get("details"))
            await send_body(call, 200, json_headers(api, call), wire.tgi_generate(a, details), reply)

    async def _embeddings(self, call: Call, reply: Reply) -> None:
        body = call.record.body
        inputs = body["input"]
        texts = [inputs] if isinstance(inputs, str) else [str(t) for t in inputs]
        dims = body.get("dimensions") or self.embedding_dims
        vectors = reply.vectors or [wire.vector_for(t, dims) for t in texts]
        tokens = sum(wire.count_tokens(t) for t in texts)
        data: list[Any] = list(vectors)
        if body.get("encoding_format") == "base64":
            data = [base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode() for v in vectors]
        payload = wire.openai_embeddings(call.record.model or "fake-embedding", data, tokens)
        await send_body(call, 200, json_headers("openai", call), payload, reply)

    async def _fault(self, call: Call, api: str, fault: Fault) -> None:
        rec = call.record
        model = rec.model or "fake-model"
        if fault.kind == "reset":
            await abort_connection(self._server, call, reset=True)
            rec.outcome = "reset"
        elif fault.kind == "error":
            status, headers, body = wire_errors.error_response(
                api,
                fault.error,
                model=model,
                request_id=call.request_id,
                message=fault.message,
                status=fault.status,
                retry_after=fault.retry_after,
                retry_after_ms=fault.retry_after_ms,
            )
            headers.update(fault.headers)
            await send_body(call, status, headers, body, None)
        elif fault.kind == "http":
            headers = {"content-type": "application/json", **id_headers(api, call), **fault.headers}
            await send_body(call, fault.status or 500, headers, (fault.body or "").encode(), None)
        elif rec.stream or api == "tgi.generate_stream":
            events = self._stream_events(call, api)
            await send_stream(self._server, call, api, events, None, None, fault)
        elif fault.kind == "malformed":
            await send_body(call, 200, json_headers(api, call), b'{"id": "broken", "choices": [', None)
        elif fault.kind == "disconnect":
            headers = {**json_headers(api, call), "content-length": "4096"}
            await call.send({"type": "http.response.start", "status": 200, "headers": encode(headers)})
            await call.send({"type": "http.response.body", "body": b'{"id": "cut', "more_body": True})
            await abort_connection(self._server, call, reset=False)
            rec.outcome = "disconnect"
        else:  # stream_error / truncate on a non-streaming call: an error response
            status, headers, body = wire_errors.error_response(
                api, fault.error, model=model, request_id=call.request_id
            )
            await send_body(call, status, headers, body, None)

    def _stream_events(self, call: Call, api: str) -> Iterator[bytes]:
        body = call.record.body
        prompt = body.get("inputs") if api.startswith("tgi") else last_user_text(body)
        a = self._answer(call.record, self.default, str(prompt or ""))
        if api == "anthropic.messages":
            return wire.anthropic_stream(a)
        if api.startswith("tgi"):
            return wire.tgi_stream(a)
        include = bool((body.get("stream_options") or {}).get("include_usage"))
        return wire.openai_stream(a, include)

    async def _error(self, call: Call, api: str, kind: str, *, status: int | None = None, message: str = "") -> None:
        st, headers, body = wire_errors.error_response(
            api,
            kind,
            model=call.record.model or "fake-model",
            request_id=call.request_id,
            message=message or None,
            status=status,
        )
        await send_body(call, st, headers, body, None)

    async def _get(self, call: Call, path: str) -> None:
        if path in ("/v1/models", "/models"):
            seen = sorted({r.model for r in self._records if r.model} | {"fake-model"})
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "legato-fake"} for m in seen]
            payload = json.dumps({"object": "list", "data": data}).encode()
            await send_body(call, 200, json_headers("openai", call), payload, None)
        elif path in ("/health", "/", "/info"):
            info = {"status": "ok", "model_id": "fake-model", "model_dtype": "float16", "router": "legato-fake"}
            await send_body(call, 200, {"content-type": "application/json"}, json.dumps(info).encode(), None)
        else:
            await self._error(call, "openai", "not_found", status=404, message=f"Unknown request URL: GET {path}.")


async def serve_forever(fake: FakeProvider, on_ready: Callable[[FakeProvider], None]) -> None:
    """Run ``fake`` until SIGINT or SIGTERM (the CLI entry point), then stop at once:
    answers in flight are cancelled and every connection is closed."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with fake:
            on_ready(fake)
            await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
