"""The streamable-HTTP app, served by uvicorn on a local port, driven by the SDK's client."""

from __future__ import annotations

import socket
from pathlib import Path

import anyio
import uvicorn

from legato.engine import Pipeline
from legato.mcp import create_mcp_server, mcp_http_app
from legato.store import Journal, RunStore
from mcp import Client


async def test_tools_over_streamable_http(tmp_path: Path) -> None:
    p = Pipeline("double", description="Doubles a number.")

    @p.step
    async def double(n: int) -> int:
        return n * 2

    async with RunStore(tmp_path / "http.db") as store:
        server = create_mcp_server(store, pipelines={"double": p})
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        web = uvicorn.Server(uvicorn.Config(mcp_http_app(server), log_level="warning", lifespan="on"))
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: web.serve(sockets=[sock]))
            with anyio.fail_after(30):
                while not web.started:
                    await anyio.sleep(0.02)
            try:
                async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                    entry = await client.call_tool("process_thoughts", {"thoughts": "HTTP transport works"})
                    assert not entry.is_error
                    run = await client.call_tool("run_pipeline", {"name": "double", "inputs": {"n": 21}})
                    assert run.structured_content is not None
                    assert run.structured_content["outputs"] == {"double": 42}
                    found = await client.call_tool("get_run", {"run_id": run.structured_content["run_id"]})
                    assert found.structured_content is not None
                    assert found.structured_content["status"] == "succeeded"
                    analysed = await client.call_tool("analyze_pipeline", {"name": "double", "volume": "10/day"})
                    assert analysed.structured_content is not None
                    assert analysed.structured_content["analysis"]["critical_path"] == ["double"]
                    assert analysed.structured_content["options"]["volume_per_month"] == 300
                    assert analysed.structured_content["options"]["today"]["measured"]["success_rate"] == 1.0
                    unknown = await client.call_tool("analyze_pipeline", {"name": "tripple"})
                    assert unknown.is_error
            finally:
                web.should_exit = True
        assert [e.title for e in await Journal(store).recent()] == ["HTTP transport works"]
