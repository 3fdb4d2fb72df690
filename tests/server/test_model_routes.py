"""The model routes' fast path answers exactly as the FastAPI routes do.

A body sent as ``application/json`` is taken by the fast
layer when it is well formed; the same body sent as ``application/vnd.legato+json``
(which FastAPI parses as JSON too) always goes through the FastAPI route. Each pair of
answers must agree: status, error body, and the headers clients read."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from legato.server._gateway import MODEL_HANDLERS
from legato.server._shed import MODEL_ROUTES

from .conftest import Running

ROUTE_TYPE = "application/vnd.legato+json"  # JSON to FastAPI, not taken by the fast layer
CHAT = {"model": "gpt-fake", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}
MESSAGES = {"model": "claude-fake", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}
EMBED = {"model": "gpt-fake", "input": "hello"}

CASES: list[tuple[str, str, Any, dict[str, str]]] = [
    ("chat ok", "/v1/chat/completions", CHAT, {}),
    ("chat as an Anthropic client", "/v1/chat/completions", CHAT, {"anthropic-version": "2023-06-01"}),
    ("messages ok", "/v1/messages", MESSAGES, {}),
    ("embeddings ok", "/v1/embeddings", EMBED, {}),
    ("not JSON", "/v1/chat/completions", b'{"model": ', {}),
    ("lone surrogate", "/v1/messages", b'{"model":"claude-fake","max_tokens":8,"messages":"\\ud800"}', {}),
    ("invalid field", "/v1/chat/completions", {**CHAT, "max_tokens": True}, {}),
    ("invalid Anthropic field", "/v1/messages", {**MESSAGES, "max_tokens": "8"}, {}),
    ("a list, not an object", "/v1/embeddings", [EMBED], {}),
    ("unknown model", "/v1/chat/completions", {**CHAT, "model": "nope"}, {}),
    ("model the key may not use", "/v1/messages", {**MESSAGES, "model": "gpt-other"}, {}),
    ("over the gateway's max_tokens", "/v1/chat/completions", {**CHAT, "max_tokens": 100_000}, {}),
    ("bad subject header", "/v1/embeddings", EMBED, {"x-legato-subject": ""}),
]


@pytest.fixture(scope="module")
def key(gateway: Running) -> str:
    return gateway.create_key(["chat", "embed"], models=["gpt-fake", "claude-fake"], rpm=100_000)


def _post(c: httpx.Client, path: str, body: Any, headers: dict[str, str], content_type: str | None) -> httpx.Response:
    content = body if isinstance(body, bytes) else httpx.Request("POST", "/", json=body).content
    sent = {**headers, **({"content-type": content_type} if content_type else {})}
    return c.post(path, content=content, headers=sent)


def _comparable(r: httpx.Response) -> dict[str, Any]:
    body = r.json()
    for volatile in ("id", "created"):
        body.pop(volatile, None)
    headers = {k: v for k, v in r.headers.items() if k.startswith(("x-ratelimit-limit", "content-type", "retry-after"))}
    return {"status": r.status_code, "body": body, "headers": headers}


@pytest.mark.parametrize(("case", "path", "body", "headers"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("content_type", ["application/json", "Application/JSON; charset=utf-8"])
def test_the_fast_path_answers_as_the_route(
    gateway: Running, key: str, case: str, path: str, body: Any, headers: dict[str, str], content_type: str | None
) -> None:
    with gateway.client(key) as c:
        fast = _post(c, path, body, headers, content_type)
        routed = _post(c, path, body, headers, ROUTE_TYPE)
    assert _comparable(fast) == _comparable(routed), case
    assert fast.headers["x-request-id"]


def test_scope_is_checked_before_the_body_on_both_paths(gateway: Running) -> None:
    embed_only = gateway.create_key(["embed"])
    with gateway.client(embed_only) as c:
        for body in (CHAT, {**CHAT, "max_tokens": True}):
            fast = _post(c, "/v1/chat/completions", body, {}, "application/json")
            routed = _post(c, "/v1/chat/completions", body, {}, ROUTE_TYPE)
            assert fast.status_code == routed.status_code == 403
            assert fast.json() == routed.json()
        not_json = _post(c, "/v1/chat/completions", b"{", {}, "application/json")
        assert not_json.status_code == 400  # invalid JSON is refused before the scope, as ever


@pytest.mark.parametrize("content_type", ["text/plain", None])
def test_a_body_not_declared_json_is_the_routes_answer(gateway: Running, key: str, content_type: str | None) -> None:
    with gateway.client(key) as c:
        r = _post(c, "/v1/chat/completions", CHAT, {}, content_type)
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "body"


def test_fast_calls_are_counted_under_the_route_template(gateway: Running, key: str) -> None:
    series = 'legato_http_requests_total{method="POST",route="/v1/embeddings",status="200"}'

    def count() -> float:
        with gateway.client() as c:
            lines = [line for line in c.get("/metrics").text.splitlines() if line.startswith(series)]
        return float(lines[0].rsplit(" ", 1)[1]) if lines else 0.0

    before = count()
    with gateway.client(key) as c:
        assert _post(c, "/v1/embeddings", EMBED, {}, "application/json").status_code == 200
    assert count() == before + 1


def test_the_routes_stay_in_the_openapi_document(gateway: Running) -> None:
    with gateway.client() as c:
        paths = c.get("/openapi.json").json()["paths"]
    for path in MODEL_HANDLERS:
        assert "post" in paths[path]


def test_the_fast_path_and_admission_agree_on_scopes() -> None:
    assert {path: h.scope for path, h in MODEL_HANDLERS.items()} == MODEL_ROUTES


class _Route:
    """The app below the fast layer (FastAPI's router, here a recorder answering 418)."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        self.bodies.append(message["body"])
        await send({"type": "http.response.start", "status": 418, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def _through(layer: Any, path: str, body: bytes, headers: list[tuple[bytes, bytes]], key: Any) -> int:
    from legato.server._auth import IDENTIFIED

    scope = {"type": "http", "method": "POST", "path": path, "headers": headers, "query_string": b"",
             "state": {IDENTIFIED: key} if key is not None else {}}  # fmt: skip
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await layer(scope, receive, send)
    return statuses[0]


@pytest.mark.anyio
async def test_the_fast_layer_takes_only_well_formed_calls() -> None:
    from legato.server._keys import ApiKey
    from legato.server._model_routes import ModelRoutes

    route = _Route()
    layer = ModelRoutes(route)
    json_type = [(b"content-type", b"application/json")]
    embed_only = ApiKey(id="k", prefix="lg_k", name="k", scopes=frozenset({"embed"}))
    good = httpx.Request("POST", "/", json=CHAT).content
    # Taken: a well-formed call is answered by the layer itself (here 403: the key may not chat).
    assert await _through(layer, "/v1/chat/completions", good, json_type, embed_only) == 403
    assert route.bodies == []
    # Passed on, body and all: not JSON, not declared JSON, no identified key, not a model route.
    for path, body, headers, key in [
        ("/v1/chat/completions", b"{", json_type, embed_only),
        ("/v1/chat/completions", good, [(b"content-type", b"text/plain")], embed_only),
        ("/v1/chat/completions", good, json_type, None),
        ("/v1/messages/count_tokens", good, json_type, embed_only),
    ]:
        assert await _through(layer, path, body, headers, key) == 418
        assert route.bodies[-1] == body


def test_model_answers_are_compact_json_even_with_wide_integers() -> None:
    from legato.server._gateway import _model_json

    assert _model_json({"a": [1.5, "é"], "b": None}) == '{"a":[1.5,"é"],"b":null}'.encode()
    assert _model_json({"n": 2**70}) == b'{"n":1180591620717411303424}'
