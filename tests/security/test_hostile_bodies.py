"""Hostile request bodies against a real ``legato serve`` whose routing group has two
deployments on the fake provider.

Every body is the client's mistake: each is answered 4xx with an error object that
names the problem (never internal exception text), no provider is called, and after
all of them every deployment's health is what it was (no failure counted, nothing
ejected) and ``/readyz`` is 200.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from _serve import ServeProcess, serving
from legato.testing import FakeProvider

pytestmark = pytest.mark.slow

CONFIG = """\
models:
  fake-a: {{provider: openai, model: gpt-fake, base_url: "{openai}", api_key: env:SECURITY_FAKE_KEY}}
  fake-b: {{provider: openai, model: gpt-fake-b, base_url: "{openai}", api_key: env:SECURITY_FAKE_KEY}}
  claude-fake: {{provider: anthropic, model: claude-fake, base_url: "{anthropic}", api_key: env:SECURITY_FAKE_KEY}}
  embed-fake: {{provider: openai, model: text-embedding-fake, base_url: "{openai}", api_key: env:SECURITY_FAKE_KEY}}
groups:
  smart:
    deployments: [{{model: fake-a}}, {{model: fake-b}}]
pipelines:
  shout: shout.yaml
server:
  master_key: env:SECURITY_MASTER_KEY
  key_cache_ttl_s: 0
  drain_timeout_s: 2
"""

PIPELINE = """\
name: shout
inputs:
  text: {type: string}
steps:
  upper:
    uses: ./steps.py:upper
    with: {text: "${inputs.text}"}
"""

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
EMBED = "/v1/embeddings"
KEYS = "/v1/admin/keys"
RUNS = "/v1/pipelines/shout/runs"

_MSG = '"messages":[{"role":"user","content":"hi"}]'
IMAGE = '[{{"type":"image_url","image_url":{{"url":"{}"}}}}]'
TOOL_USE = '[{"type":"tool_use","id":"t","name":"f","input":[1]}]'


def chat(extra: str = "", content: str = '"hi"', model: str = '"smart"') -> bytes:
    return f'{{"model":{model},"messages":[{{"role":"user","content":{content}}}]{extra}}}'.encode()


def anthropic(extra: str = "", content: str = '"hi"', max_tokens: str = "5") -> bytes:
    messages = f'[{{"role":"user","content":{content}}}]'
    return f'{{"model":"claude-fake","max_tokens":{max_tokens},"messages":{messages}{extra}}}'.encode()


@dataclass(frozen=True)
class Hostile:
    name: str
    path: str
    body: bytes
    says: str  # a phrase the error message must contain
    status: int = 400


TABLE = [
    # invalid Unicode, as JSON escapes and as raw bytes
    Hostile("lone high surrogate", CHAT, chat(content='"\\ud800"'), "lone surrogate U+D800"),
    Hostile("lone low surrogate", CHAT, chat(content='"abc\\udc00"'), "lone surrogate U+DC00"),
    Hostile("reversed surrogate pair", CHAT, chat(content='"\\udc00\\ud800"'), "lone surrogate"),
    Hostile("surrogate in model name", CHAT, chat(model='"smart\\ud800"'), "lone surrogate"),
    Hostile("surrogate in an object key", CHAT, b'{"model":"smart","\\ud800":1,' + _MSG.encode() + b"}", "surrogate"),
    Hostile(
        "surrogate in tool parameters",
        CHAT,
        chat(',"tools":[{"type":"function","function":{"name":"f","parameters":{"x":"\\udfff"}}}]'),
        "lone surrogate U+DFFF",
    ),
    Hostile("surrogate in stop", CHAT, chat(',"stop":["\\ud83d"]'), "lone surrogate U+D83D"),
    Hostile("surrogate as UTF-8 bytes", CHAT, chat().replace(b"hi", b"\xed\xa0\x80"), "UTF-8"),
    Hostile("invalid UTF-8 byte", CHAT, chat().replace(b"hi", b"h\xffi"), "not valid UTF-8"),
    Hostile("truncated UTF-8", CHAT, chat().replace(b"hi", b"h\xc3"), "not valid UTF-8"),
    Hostile("overlong UTF-8", CHAT, chat().replace(b"hi", b"\xc0\xaf"), "not valid UTF-8"),
    # values that would only coerce
    Hostile("max_tokens true", CHAT, chat(',"max_tokens":true'), "max_tokens"),
    Hostile("stream yes", CHAT, chat(',"stream":"yes"'), "stream"),
    Hostile("stream 1", CHAT, chat(',"stream":1'), "stream"),
    Hostile("temperature as string", CHAT, chat(',"temperature":"0.5"'), "temperature"),
    Hostile("max_tokens fractional", CHAT, chat(',"max_tokens":1.5'), "max_tokens"),
    Hostile("max_tokens negative", CHAT, chat(',"max_tokens":-1'), "max_tokens"),
    Hostile("max_tokens huge", CHAT, chat(',"max_tokens":' + "9" * 40), "max_tokens"),
    Hostile("n true", CHAT, chat(',"n":true'), "n"),
    Hostile(
        "include_usage yes", CHAT, chat(',"stream":true,"stream_options":{"include_usage":"yes"}'), "include_usage"
    ),
    # numbers JSON does not have
    Hostile("NaN", CHAT, chat(',"temperature":NaN'), "not valid JSON"),
    Hostile("Infinity", CHAT, chat(',"temperature":Infinity'), "not valid JSON"),
    Hostile("overflowing float", CHAT, chat(',"temperature":1e400'), "temperature"),
    # wrong shapes
    Hostile("messages a string", CHAT, b'{"model":"smart","messages":"hi"}', "messages"),
    Hostile("messages empty", CHAT, b'{"model":"smart","messages":[]}', "messages"),
    Hostile("unknown role", CHAT, chat().replace(b'"user"', b'"root"'), "role"),
    Hostile("bad tool name", CHAT, chat(',"tools":[{"type":"function","function":{"name":"no spaces!"}}]'), "name"),
    Hostile("body an array", CHAT, b"[]", "invalid request"),
    Hostile("body null", CHAT, b"null", "invalid request"),
    Hostile("body a string", CHAT, b'"hello"', "invalid request"),
    Hostile("truncated JSON", CHAT, b'{"model":"smart",', "not valid JSON"),
    Hostile("empty body", CHAT, b"", "body"),
    Hostile("nested 5000 deep", CHAT, chat(content="[" * 5000 + "]" * 5000), "nested deeper"),
    Hostile("metadata service URL", CHAT, chat(content=IMAGE.format("http://169.254.169.254/")), "not allowed"),
    # Anthropic Messages
    Hostile("anthropic lone surrogate", MESSAGES, anthropic(content='"\\ud800"'), "lone surrogate"),
    Hostile("anthropic surrogate in system", MESSAGES, anthropic(',"system":"\\udbff"'), "lone surrogate"),
    Hostile("anthropic max_tokens true", MESSAGES, anthropic(max_tokens="true"), "max_tokens"),
    Hostile("anthropic stream 1", MESSAGES, anthropic(',"stream":1'), "stream"),
    Hostile("anthropic tool input a list", MESSAGES, anthropic(content=TOOL_USE), "input"),
    # embeddings
    Hostile("embedding lone surrogate", EMBED, b'{"model":"embed-fake","input":"\\ud800"}', "lone surrogate"),
    Hostile("embedding token arrays", EMBED, b'{"model":"embed-fake","input":[1,2,3]}', "input"),
    Hostile("embedding dimensions true", EMBED, b'{"model":"embed-fake","input":"x","dimensions":true}', "dimensions"),
    # admin API
    Hostile("budget_usd false", KEYS, b'{"name":"k","scopes":["chat"],"budget_usd":false}', "budget_usd"),
    Hostile("tpm past INTEGER", KEYS, b'{"name":"k","scopes":["chat"],"tpm":9999999999}', "tpm"),
    Hostile("rpm negative", KEYS, b'{"name":"k","scopes":["chat"],"rpm":-1}', "rpm"),
    Hostile("key name lone surrogate", KEYS, b'{"name":"\\ud800","scopes":["chat"]}', "lone surrogate"),
    Hostile("unknown scope", KEYS, b'{"name":"k","scopes":["root"]}', "scopes"),
    # runs API
    Hostile("run input lone surrogate", RUNS, b'{"inputs":{"text":"\\ud800"}}', "lone surrogate"),
    Hostile("run inputs a list", RUNS, b'{"inputs":[1]}', "inputs"),
    Hostile("run input mistyped", RUNS, b'{"inputs":{"text":12}}', "text"),
]

INTERNAL = ("Traceback", "UnicodeEncodeError", "UnicodeDecodeError", "JSONDecodeError", "Exception", 'File "')


@pytest.fixture(scope="module")
def serve(fake: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    tmp = tmp_path_factory.mktemp("hostile")
    (tmp / "legato.yaml").write_text(CONFIG.format(openai=fake.openai_base_url, anthropic=fake.anthropic_base_url))
    (tmp / "shout.yaml").write_text(PIPELINE)
    (tmp / "steps.py").write_text("def upper(text: str) -> str:\n    return text.upper()\n")
    with serving(tmp / "legato.yaml") as process:
        yield process


def send(client: httpx.Client, case: Hostile) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if case.path == MESSAGES:
        headers["anthropic-version"] = "2023-06-01"
    return client.post(case.path, content=case.body, headers=headers)


def error_message(response: httpx.Response) -> str:
    body = response.json()
    if body.get("type") == "error":
        assert body["error"]["type"] in ("invalid_request_error", "request_too_large"), body
        return str(body["error"]["message"])
    assert body["error"]["type"] == "invalid_request_error", body
    return str(body["error"]["message"])


def test_the_table_is_large_enough() -> None:
    assert len(TABLE) >= 30
    assert len({c.name for c in TABLE}) == len(TABLE)


@pytest.mark.parametrize("case", TABLE, ids=[c.name for c in TABLE])
def test_each_hostile_body_is_a_clear_4xx(serve: ServeProcess, fake: FakeProvider, case: Hostile) -> None:
    before = len(fake.requests)
    with serve.client() as c:
        r = send(c, case)
    assert r.status_code == case.status, r.text
    message = error_message(r)
    assert case.says in message, message
    assert not any(word in r.text for word in INTERNAL), r.text
    assert len(fake.requests) == before  # refused before any provider call


def test_deployment_health_is_unchanged_after_every_hostile_body(serve: ServeProcess, fake: FakeProvider) -> None:
    with serve.client() as c:
        assert c.post(CHAT, json={"model": "smart", "messages": [{"role": "user", "content": "hi"}]}).status_code == 200
        before = c.get("/v1/admin/deployments").json()["data"]
        assert {d["deployment"] for d in before} == {"fake-a", "fake-b"}
        for _ in range(3):
            for case in TABLE:
                assert 400 <= send(c, case).status_code < 500, case.name
        after = c.get("/v1/admin/deployments").json()["data"]
        assert c.get("/readyz").status_code == 200
        for row in after:
            assert row["state"] == "healthy", row
            assert row["failures"] == 0, row
            assert row["consecutive_failures"] == 0, row
            assert row["last_error"] is None, row
        assert [(d["deployment"], d["successes"]) for d in after] == [(d["deployment"], d["successes"]) for d in before]
        # another tenant is served as before
        other = serve.create_key(["chat"])
        with serve.client(other) as o:
            r = o.post(CHAT, json={"model": "smart", "messages": [{"role": "user", "content": "hello"}]})
        assert r.status_code == 200, r.text


def test_a_valid_surrogate_pair_escape_is_text_not_an_error(serve: ServeProcess) -> None:
    """What ``json.dumps`` sends by default for an emoji (``"\\ud83d\\ude00"``) is valid JSON."""
    body = json.dumps({"model": "smart", "messages": [{"role": "user", "content": "\U0001f600 fine"}]})
    assert "\\ud83d\\ude00" in body
    with serve.client() as c:
        r = c.post(CHAT, content=body.encode(), headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
