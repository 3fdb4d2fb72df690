"""The MCP server mounted at /mcp: reachable with a runs:write key through the official client,
built on the first authorised request (an idle gateway never loads the MCP SDK's server)."""

from __future__ import annotations

from pathlib import Path

import httpx
import httpx2
import pytest
from mcp.client.streamable_http import streamable_http_client

from _serve import serve_in_thread
from legato.server import create_app
from legato.server._errors import GatewayError
from legato.server._mcp_guard import McpGuard
from legato.server._mcp_mount import McpOnDemand
from legato.testing import FakeProvider
from mcp import Client

from .conftest import MASTER, Running, catalog_for, gateway_settings, pipeline_config


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


def _on_demand(app: object) -> McpOnDemand:
    for route in app.router.routes:  # type: ignore[attr-defined]
        if getattr(route, "path", None) == "/mcp" and isinstance(route.app, McpGuard):
            assert isinstance(route.app.app, McpOnDemand)
            return route.app.app
    raise AssertionError("no /mcp route")


def test_the_mcp_server_is_built_by_the_first_authorised_request(fake: FakeProvider, tmp_path: Path) -> None:
    app = create_app(gateway_settings(tmp_path), catalog=catalog_for(fake), config=pipeline_config(tmp_path))
    on_demand = _on_demand(app)
    message = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}  # fmt: skip
    accept = {"Accept": "application/json, text/event-stream"}
    with serve_in_thread(app) as url:
        refused = httpx.post(url + "/mcp", json=message, headers=accept, timeout=30)
        assert refused.status_code == 401
        assert not on_demand.built
        served = httpx.post(url + "/mcp", json=message, headers={**accept, "Authorization": f"Bearer {MASTER}"},
                            timeout=30)  # fmt: skip
        assert served.status_code == 200, served.text
        assert on_demand.built


async def test_without_its_lifespan_task_the_mcp_endpoint_answers_503_at_once() -> None:
    def build() -> object:
        raise AssertionError("nothing builds the server without the lifespan task")

    on_demand = McpOnDemand(build)  # type: ignore[arg-type]
    scope = {"type": "http", "method": "POST", "path": "/mcp", "headers": []}
    with pytest.raises(GatewayError) as refused:
        await on_demand(scope, None, None)
    assert refused.value.status == 503
    assert refused.value.code == "mcp_unavailable"
