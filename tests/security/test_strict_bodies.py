"""Bodies outside the model routes are read as strictly as theirs, against a real
``legato serve``: JSON-RPC messages at ``/mcp`` and the dashboard's forms with invalid
UTF-8, percent-escapes that decode to invalid UTF-8, lone surrogates or NaN are a 400
naming the problem, never a 5xx and never silently replaced characters."""

from __future__ import annotations

import re

import httpx
import pytest

from legato.server.ui._actions import FormError, FormField, parse_inputs

from .conftest import MASTER, ServedGateway

MCP_HEADERS = {
    "Authorization": f"Bearer {MASTER}",
    "Content-Type": "application/json",
    "Accept": "application/json, text/event-stream",
}
INITIALIZE = (
    '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26",'
    '"capabilities":{},"clientInfo":{"name":NAME,"version":"1"}}}'
)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        (b'"\\ud800"', b"lone surrogate U+D800"),
        (b'"\xff\xfe"', b"not valid UTF-8"),
        (b'"\xed\xa0\x80"', b"not valid UTF-8"),  # a surrogate encoded in the UTF-8 bytes
        (b"NaN", b"NaN is not a JSON value"),
    ],
)
def test_mcp_messages_with_invalid_text_are_a_parse_error(served: ServedGateway, name: bytes, problem: bytes) -> None:
    body = INITIALIZE.encode().replace(b"NAME", name)
    r = httpx.post(served.url + "/mcp", content=body, headers=MCP_HEADERS, timeout=30)
    assert r.status_code == 400, r.text
    answer = r.json()
    assert answer["error"]["code"] == -32700
    assert problem.decode() in answer["error"]["message"]
    assert "mcp-session-id" not in r.headers  # no session was opened for it
    ok = httpx.post(served.url + "/mcp", content=INITIALIZE.replace("NAME", '"x"'), headers=MCP_HEADERS, timeout=30)
    assert ok.status_code == 200


def test_a_tool_call_with_a_lone_surrogate_is_a_parse_error(served: ServedGateway) -> None:
    with httpx.Client(base_url=served.url, headers=MCP_HEADERS, timeout=30) as c:
        opened = c.post("/mcp", content=INITIALIZE.replace("NAME", '"x"'))
        session = {"mcp-session-id": opened.headers["mcp-session-id"]}
        params = '{"name":"search_journal","arguments":{"query":"\\udc00"}}'
        call = '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":' + params + "}"
        r = c.post("/mcp", content=call, headers=session)
        assert r.status_code == 400
        assert "invalid Unicode in params.arguments.query: lone surrogate U+DC00" in r.json()["error"]["message"]


def browser(served: ServedGateway) -> httpx.Client:
    return httpx.Client(base_url=served.url, follow_redirects=False, timeout=30)


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.mark.parametrize("body", [b"key=%FF&next=/ui/", b"key=\xff\xfe", b"key=%ED%A0%80"])
def test_a_sign_in_form_that_is_not_utf8_is_400(served: ServedGateway, body: bytes) -> None:
    with browser(served) as c:
        r = c.post("/ui/login", content=body, headers=FORM)
    assert r.status_code == 400
    assert "not valid UTF-8" in r.text


def test_run_forms_refuse_invalid_text_instead_of_replacing_it(served: ServedGateway) -> None:
    with browser(served) as c:
        assert c.post("/ui/login", data={"key": MASTER, "next": "/ui/"}).status_code == 303
        r = c.post("/ui/pipelines/shout/start", content=b"input.text=%ED%A0%80&confirm=yes", headers=FORM)
        assert r.status_code == 400
        assert "not valid UTF-8" in r.text
        r = c.post("/ui/pipelines/shout/start", content=b"input.text=caf%C3%A9&confirm=yes", headers=FORM)
        assert r.status_code == 303  # valid UTF-8 is taken as typed
        run = c.get(r.headers["location"])
        assert run.status_code == 200


@pytest.mark.parametrize(
    ("typed", "problem"),
    [
        ('{"note": "\\ud800"}', "invalid Unicode in note: lone surrogate U+D800"),
        ("[NaN]", "the value is not valid JSON: NaN is not a JSON value"),
        ("{", "the value is not valid JSON"),
    ],
)
def test_json_fields_of_forms_are_parsed_strictly(typed: str, problem: str) -> None:
    """A run input or a step's answer typed as JSON is read like an API body: a lone
    surrogate escape or NaN is the form's mistake (shown with a 400), named."""
    field = FormField("data", "json", True, None, "", "object")
    with pytest.raises(FormError, match=re.escape(f"data: {problem}")):
        parse_inputs([field], {"input.data": [typed]})
    assert parse_inputs([field], {"input.data": ['{"note": "caf\u00e9"}']}) == {"data": {"note": "café"}}
