"""The MCP server mounted at /mcp: reachable with a runs:write key through the official client."""

from __future__ import annotations

import httpx2
import pytest
from mcp.client.streamable_http import streamable_http_client

from mcp import Client

from .conftest import Running


async def test_mcp_tools_behind_the_gateway(gateway: Running) -> None:
    key = gateway.create_key(["runs:read", "runs:write"])
    headers = {"Authorization": f"Bearer {key}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(gateway.url + "/mcp", http_client=http)) as client,
    ):
        listed = await client.call_tool("list_pipelines", {})
        assert not listed.is_error
        run = await client.call_tool("run_pipeline", {"name": "shout", "inputs": {"text": "mcp"}})
        assert run.structured_content is not None
        assert run.structured_content["outputs"] == {"result": "MCP"}


@pytest.mark.parametrize(("scopes", "status"), [(None, 401), (["chat"], 403)])
def test_mcp_needs_a_runs_write_key(gateway: Running, scopes: list[str] | None, status: int) -> None:
    key = gateway.create_key(scopes) if scopes else None
    with gateway.client(key, accept="application/json, text/event-stream") as c:
        r = c.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert r.status_code == status
    assert r.json()["error"]["type"] in ("authentication_error", "permission_error")


async def test_runs_started_over_mcp_are_counted(gateway: Running) -> None:
    from .test_runs_api import _counter

    series = ("legato_steps_total", {"pipeline": "shout", "step": "upper", "status": "succeeded"})
    key = gateway.create_key(["runs:read", "runs:write"])
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=30) as plain:
        before = _counter((await plain.get("/metrics")).text, *series)
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30) as http,
        Client(streamable_http_client(gateway.url + "/mcp", http_client=http)) as client,
    ):
        run = await client.call_tool("run_pipeline", {"name": "shout", "inputs": {"text": "counted"}})
        assert not run.is_error
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=30) as plain:
        after = _counter((await plain.get("/metrics")).text, *series)
    assert after == before + 1
