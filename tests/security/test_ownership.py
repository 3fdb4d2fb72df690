"""The ownership matrix against a real ``legato serve`` process.

Every route, MCP tool and dashboard page that reads or changes a run, a run's
events, a journal entry or spend, asked by the key that owns the record, by another
(non-admin) key and by an admin-scope key. The other key gets exactly what it would
get for an id that does not exist (404 / "no run"), never 403, so ids do not reveal
that a record exists; the admin sees everything.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
from mcp.client.streamable_http import streamable_http_client

from _serve import MASTER
from mcp import Client

from .conftest import ServedGateway

pytestmark = pytest.mark.slow

RUNNER = ["runs:read", "runs:write"]


@dataclass
class Tenants:
    served: ServedGateway
    a: str  # owns run_a and its journal entries
    b: str  # another tenant
    admin: str  # a key with the admin scope (not the master key)
    run_a: dict[str, Any]


@pytest.fixture(scope="module")
def tenants(served: ServedGateway) -> Tenants:
    a = served.create_key(RUNNER, name="tenant-a")
    b = served.create_key(RUNNER, name="tenant-b")
    admin = served.create_key(["admin"], name="operator")
    return Tenants(served, a, b, admin, served.finished_run(a, "shout", "mine"))


@asynccontextmanager
async def mcp_as(served: ServedGateway, key: str) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30) as http,
        Client(streamable_http_client(served.url + "/mcp", http_client=http)) as client,
    ):
        yield client


async def tool(served: ServedGateway, key: str, name: str, args: dict[str, Any]) -> tuple[bool, Any, str]:
    """``(is_error, structured result, text)`` of one MCP tool call made with ``key``."""
    async with mcp_as(served, key) as client:
        result = await client.call_tool(name, args)
    text = " ".join(getattr(c, "text", "") for c in result.content)
    return result.is_error, result.structured_content, text


async def answer(served: ServedGateway, key: str, name: str, args: dict[str, Any]) -> Any:
    """The structured result of a tool call that must succeed (lists come as ``{"result": [...]}``)."""
    error, doc, text = await tool(served, key, name, args)
    assert not error, text
    assert doc is not None
    return doc.get("result", doc)


async def refused(served: ServedGateway, key: str, name: str, args: dict[str, Any]) -> str:
    """The message of a tool call that must fail."""
    error, _, text = await tool(served, key, name, args)
    assert error, text
    return text


# -- REST: the runs API ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/runs/{id}"), ("GET", "/v1/runs/{id}/events"), ("POST", "/v1/runs/{id}/cancel"),
     ("POST", "/v1/runs/{id}/resume")],
)  # fmt: skip
def test_runs_api_matrix(tenants: Tenants, method: str, path: str) -> None:
    run_id = tenants.run_a["id"]
    answers = {}
    for who, key in (("owner", tenants.a), ("other", tenants.b), ("admin", tenants.admin), ("master", MASTER)):
        with tenants.served.client(key) as c:
            r = c.request(method, path.format(id=run_id))
            is_json = r.headers["content-type"].startswith("application/json")
            answers[who] = (r.status_code, r.json() if is_json else None)
    with tenants.served.client(tenants.b) as c:
        unknown = c.request(method, path.format(id="0" * len(run_id)))
    # another tenant's run is indistinguishable from a run that does not exist
    assert answers["other"][0] == unknown.status_code == 404
    assert answers["other"][1]["error"]["code"] == unknown.json()["error"]["code"] == "run_not_found"  # type: ignore[index]
    expected = 409 if method == "POST" else 200  # cancelling or resuming a finished run is a conflict, not a leak
    assert answers["owner"][0] == answers["admin"][0] == answers["master"][0] == expected


def test_run_id_prefixes_follow_the_same_rule(tenants: Tenants) -> None:
    prefix = tenants.run_a["id"][:10]
    with tenants.served.client(tenants.a) as c:
        assert c.get(f"/v1/runs/{prefix}").json()["id"] == tenants.run_a["id"]
    with tenants.served.client(tenants.b) as c:
        assert c.get(f"/v1/runs/{prefix}").status_code == 404


def test_run_listing_shows_own_runs_only(tenants: Tenants) -> None:
    def ids(key: str) -> set[str]:
        with tenants.served.client(key) as c:
            return {r["id"] for r in c.get("/v1/runs", params={"limit": 500}).json()["data"]}

    assert tenants.run_a["id"] in ids(tenants.a)
    assert tenants.run_a["id"] not in ids(tenants.b)
    assert tenants.run_a["id"] in ids(tenants.admin)
    with tenants.served.client(tenants.b) as c:  # neither its words nor its owner's key find it
        for params in ({"q": "mine"}, {"q": tenants.run_a["id"][:10]}, {"key": tenants.a[:12]}):
            assert tenants.run_a["id"] not in {r["id"] for r in c.get("/v1/runs", params=params).json()["data"]}
    with tenants.served.client(tenants.a) as c:
        assert tenants.run_a["id"] in {r["id"] for r in c.get("/v1/runs", params={"q": "mine"}).json()["data"]}


@pytest.mark.parametrize("path", ["/v1/admin/spend", "/v1/admin/keys"])
def test_spend_and_keys_are_for_admins(tenants: Tenants, path: str) -> None:
    with tenants.served.client(tenants.a) as c:
        assert c.get(path).status_code == 403
    with tenants.served.client(tenants.admin) as c:
        assert c.get(path).status_code == 200


# -- MCP over /mcp ---------------------------------------------------------------------


async def test_mcp_get_run_matrix(tenants: Tenants) -> None:
    run_id = tenants.run_a["id"]
    assert (await answer(tenants.served, tenants.a, "get_run", {"run_id": run_id}))["outputs"] == {"upper": "MINE"}
    text = await refused(tenants.served, tenants.b, "get_run", {"run_id": run_id})
    assert "MINE" not in text
    unknown = await refused(tenants.served, tenants.b, "get_run", {"run_id": "0" * len(run_id)})
    assert text.replace(run_id, "ID") == unknown.replace("0" * len(run_id), "ID")  # same answer as no run at all
    assert (await answer(tenants.served, tenants.admin, "get_run", {"run_id": run_id[:10]}))["run_id"] == run_id


async def test_mcp_list_runs_follows_the_same_rule(tenants: Tenants) -> None:
    """``list_runs`` reads the same filters as ``GET /v1/runs`` under the same ownership
    rule: searching for another tenant's words finds nothing of theirs."""
    mine = tenants.run_a["id"]
    found = await answer(tenants.served, tenants.a, "list_runs", {"q": "MINE", "pipeline": "shout"})
    assert [r["run_id"] for r in found["runs"]] == [mine]
    assert found["runs"][0]["status"] == "succeeded"
    for who in (tenants.admin, MASTER):
        assert mine in [r["run_id"] for r in (await answer(tenants.served, who, "list_runs", {"q": "mine"}))["runs"]]
    theirs = await answer(tenants.served, tenants.b, "list_runs", {"q": "mine", "limit": 500})
    assert mine not in [r["run_id"] for r in theirs["runs"]]
    with tenants.served.client(tenants.b) as c:  # the REST listing agrees
        assert mine not in [r["id"] for r in c.get("/v1/runs", params={"q": "mine"}).json()["data"]]
    assert "status: 'done' is not one of" in await refused(tenants.served, tenants.a, "list_runs", {"status": "done"})
    assert "limit: 0 is not between 1 and 500" in await refused(tenants.served, tenants.a, "list_runs", {"limit": 0})


async def test_a_run_started_over_mcp_belongs_to_the_calling_key(tenants: Tenants) -> None:
    started = await answer(tenants.served, tenants.b, "run_pipeline", {"name": "shout", "inputs": {"text": "b"}})
    run_b = started["run_id"]
    with tenants.served.client(tenants.b) as c:
        assert c.get(f"/v1/runs/{run_b}").status_code == 200
        assert run_b in {r["id"] for r in c.get("/v1/runs").json()["data"]}
    with tenants.served.client(tenants.a) as c:
        assert c.get(f"/v1/runs/{run_b}").status_code == 404
    await refused(tenants.served, tenants.a, "get_run", {"run_id": run_b})


async def test_mcp_idempotency_keys_are_per_tenant(tenants: Tenants) -> None:
    args = {"name": "shout", "inputs": {"text": "same"}, "idempotency_key": "shared-key"}
    first = await answer(tenants.served, tenants.a, "run_pipeline", args)
    second = await answer(tenants.served, tenants.b, "run_pipeline", args)
    assert first["run_id"] != second["run_id"]


async def test_journal_entries_belong_to_their_author(tenants: Tenants) -> None:
    served = tenants.served
    entry = await answer(served, tenants.a, "process_thoughts", {"thoughts": "zanzibar quota lesson"})
    for key, visible in ((tenants.a, True), (tenants.b, False), (tenants.admin, True)):
        found = await answer(served, key, "search_journal", {"query": "zanzibar", "limit": 50})
        assert (entry["id"] in {e["id"] for e in found}) is visible
        recent = await answer(served, key, "list_recent_entries", {"limit": 100})
        assert (entry["id"] in {e["id"] for e in recent}) is visible
        error, _, _ = await tool(served, key, "read_journal_entry", {"entry_id": entry["id"]})
        assert error is not visible
    unknown = await refused(served, tenants.b, "read_journal_entry", {"entry_id": 10**9})
    other = await refused(served, tenants.b, "read_journal_entry", {"entry_id": entry["id"]})
    assert other.replace(str(entry["id"]), "N") == unknown.replace(str(10**9), "N")


async def test_an_entry_cannot_name_another_tenants_run(tenants: Tenants) -> None:
    args = {"thoughts": "about your run", "run_id": tenants.run_a["id"]}
    assert "no run" in await refused(tenants.served, tenants.b, "process_thoughts", args)
    assert (await answer(tenants.served, tenants.a, "process_thoughts", args))["run_id"] == tenants.run_a["id"]


async def test_the_reflection_on_a_run_belongs_to_the_runs_owner(tenants: Tenants) -> None:
    failed = tenants.served.finished_run(tenants.a, "boom", "kaboom")
    assert failed["status"] == "failed"

    async def reflections(key: str) -> list[dict[str, Any]]:
        recent = await answer(tenants.served, key, "list_recent_entries", {"limit": 100, "pipeline": "boom"})
        return [e for e in recent if e["run_id"] == failed["id"]]

    mine = await reflections(tenants.a)
    assert [e["author"] for e in mine] == ["auto"]
    assert await reflections(tenants.b) == []
    assert len(await reflections(tenants.admin)) == 1


# -- the dashboard ---------------------------------------------------------------------


def ui(tenants: Tenants, key: str) -> Any:
    return tenants.served.client(key, follow_redirects=False)


def test_dashboard_run_pages_matrix(tenants: Tenants) -> None:
    run_id = tenants.run_a["id"]
    for path in (f"/ui/runs/{run_id}", f"/ui/live/runs/{run_id}", f"/ui/runs/{run_id[:10]}"):
        with ui(tenants, tenants.b) as c:
            assert c.get(path).status_code == 404, path
            assert c.get(path.replace(run_id[:10], "0" * 10)).status_code == 404
        for key in (tenants.a, tenants.admin, MASTER):
            with ui(tenants, key) as c:
                r = c.get(path)
                assert r.status_code == 200, (path, r.text[:200])
                assert run_id in r.text


def test_dashboard_runs_list_shows_own_runs_only(tenants: Tenants) -> None:
    run_id = tenants.run_a["id"]
    for key, visible in ((tenants.a, True), (tenants.b, False), (tenants.admin, True)):
        with ui(tenants, key) as c:
            page = c.get("/ui/", params={"limit": 500})
            assert page.status_code == 200
            assert (run_id[:12] in page.text) is visible
            assert (run_id in c.get("/ui/", params={"q": run_id[:10]}).text) is visible


async def test_dashboard_journal_shows_own_entries_only(tenants: Tenants) -> None:
    await answer(tenants.served, tenants.a, "process_thoughts", {"thoughts": "quixotic provider quirk"})
    for key, visible in ((tenants.a, True), (tenants.b, False), (tenants.admin, True)):
        with ui(tenants, key) as c:
            assert ("quixotic provider quirk" in c.get("/ui/journal").text) is visible
            found = c.get("/ui/journal", params={"q": "quixotic"}).text  # the query itself is echoed back
            assert ("quixotic provider quirk" in found) is visible


def test_spend_rows_belong_to_their_key(tenants: Tenants) -> None:
    served = tenants.served
    chat_a = served.create_key(["chat", "runs:read"], name="spender-a")
    chat_b = served.create_key(["chat", "runs:read"], name="spender-b")
    for key in (chat_a, chat_b):
        with served.client(key) as c:
            body = {"model": "gpt-fake", "messages": [{"role": "user", "content": "hi"}]}
            assert c.post("/v1/chat/completions", json=body).status_code == 200
    for key, sees in ((chat_a, {chat_a}), (chat_b, {chat_b}), (tenants.admin, {chat_a, chat_b})):
        with ui(tenants, key) as c:
            page = c.get("/ui/spend").text
            rows = c.get("/v1/spend").json()["data"]  # the same rule over REST
        assert {k for k in (chat_a, chat_b) if k[:12] in page} == sees
        assert {k for k in (chat_a, chat_b) if any(r["prefix"] == k[:12] for r in rows)} == sees


def test_gateway_calls_belong_to_their_key(tenants: Tenants) -> None:
    """The dashboard's call view (prompts and answers included) follows the same rule."""
    served = tenants.served
    callers = [served.create_key(["chat", "runs:read"], name=f"caller-{n}") for n in ("a", "b")]
    marks = {key: f"req-call-{key[3:12]}" for key in callers}
    for key in callers:
        with served.client(key) as c:
            body = {"model": "gpt-fake", "messages": [{"role": "user", "content": "hi"}]}
            assert c.post("/v1/chat/completions", json=body, headers={"x-request-id": marks[key]}).status_code == 200
    with ui(tenants, tenants.admin) as c:
        for _ in range(100):  # calls are written in batches, about every second
            page = c.get("/ui/calls").text
            if all(m in page for m in marks.values()):
                break
            time.sleep(0.1)
    for key, sees in ((callers[0], {callers[0]}), (callers[1], {callers[1]}), (tenants.admin, set(callers))):
        with ui(tenants, key) as c:
            page = c.get("/ui/calls").text
        assert {k for k in callers if marks[k] in page} == sees
    with ui(tenants, callers[1]) as c:  # asking for another key's calls gives one's own
        assert marks[callers[0]] not in c.get("/ui/calls", params={"key": callers[0]}).text


def test_dashboard_models_page_is_for_admins(tenants: Tenants) -> None:
    with ui(tenants, tenants.a) as c:
        assert c.get("/ui/models").status_code == 403
    with ui(tenants, tenants.admin) as c:
        assert c.get("/ui/models").status_code == 200


def test_keys_without_runs_read_do_not_get_in(tenants: Tenants) -> None:
    chat_only = tenants.served.create_key(["chat"], name="chat-only")
    with ui(tenants, chat_only) as c:
        assert c.get("/ui/").status_code == 303
        assert c.get("/ui/live/runs").status_code == 401


def test_dashboard_cancel_matrix(tenants: Tenants) -> None:
    run_id = tenants.run_a["id"]
    confirmed = {"confirm": "yes"}
    with ui(tenants, tenants.b) as c:
        assert c.post(f"/ui/runs/{run_id}/cancel", data=confirmed).status_code == 404
    for key in (tenants.a, tenants.admin):  # seen, but already finished: a conflict, not a leak
        with ui(tenants, key) as c:
            assert c.post(f"/ui/runs/{run_id}/cancel", data=confirmed).status_code == 409
    reader = tenants.served.create_key(["runs:read"], name="reader")
    with ui(tenants, reader) as c:
        assert c.post(f"/ui/runs/{run_id}/cancel", data=confirmed).status_code == 404
    with tenants.served.client(MASTER) as admin:
        assert admin.get(f"/v1/runs/{run_id}").json()["status"] == "succeeded"


MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
MCP_HELLO = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "probe", "version": "1"}}
MCP_INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": MCP_HELLO}
MCP_LISTING = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}


def _mcp_session(served: ServedGateway, key: str) -> str:
    with served.client(key, headers=MCP_HEADERS) as c:
        opened = c.post("/mcp", json=MCP_INIT)
        assert opened.status_code == 200, opened.text
        session = str(opened.headers["mcp-session-id"])
    with served.client(key, headers={**MCP_HEADERS, "mcp-session-id": session}) as c:
        assert c.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}).status_code == 202
    return session


def _mcp_lists(served: ServedGateway, key: str, session: str) -> int:
    with served.client(key, headers={**MCP_HEADERS, "mcp-session-id": session}) as c:
        return int(c.post("/mcp", json=MCP_LISTING).status_code)


def test_one_key_cannot_hold_every_mcp_session(tenants: Tenants) -> None:
    """A key holds at most ``mcp_sessions_per_key`` (16) sessions: opening more ends its
    own least recently used ones, never another key's."""
    greedy = tenants.served.create_key(RUNNER, name="greedy")
    neighbour = _mcp_session(tenants.served, tenants.b)
    sessions = [_mcp_session(tenants.served, greedy) for _ in range(16)]
    assert _mcp_lists(tenants.served, greedy, sessions[0]) == 200  # now the most recently used
    sessions += [_mcp_session(tenants.served, greedy) for _ in range(2)]
    assert _mcp_lists(tenants.served, greedy, sessions[1]) == 404  # ended to make room
    assert _mcp_lists(tenants.served, greedy, sessions[2]) == 404
    for kept in (sessions[0], *sessions[3:]):
        assert _mcp_lists(tenants.served, greedy, kept) == 200
    assert _mcp_lists(tenants.served, tenants.b, neighbour) == 200
    assert _mcp_lists(tenants.served, tenants.b, _mcp_session(tenants.served, tenants.b)) == 200


def test_an_mcp_session_belongs_to_the_key_that_opened_it(tenants: Tenants) -> None:
    headers = MCP_HEADERS
    init = MCP_INIT
    with tenants.served.client(tenants.a, headers=headers) as a:
        opened = a.post("/mcp", json=init)
        assert opened.status_code == 200, opened.text
        session = opened.headers["mcp-session-id"]
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    with tenants.served.client(tenants.b, headers={**headers, "mcp-session-id": session}) as b:
        r = b.post("/mcp", json=listing)
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "session_not_found"
        assert b.delete("/mcp").status_code == 404  # nor can it end the session
    with tenants.served.client(tenants.a, headers={**headers, "mcp-session-id": session}) as a:
        a.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert a.post("/mcp", json=listing).status_code == 200
