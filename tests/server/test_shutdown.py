"""Shutdown leaves no run half-recorded: a run still going when the drain deadline passes
is stopped with its lease released, and the next gateway to start on the same store
takes it over and finishes it."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx

from legato.server import MappingCatalog, create_app

from .conftest import MASTER, gateway_settings, pipeline_config


async def test_runs_in_flight_at_shutdown_are_resumed_by_the_next_gateway(tmp_path: Path) -> None:
    config = pipeline_config(tmp_path)
    settings = gateway_settings(tmp_path, drain_timeout_s=0.2)

    first = create_app(settings, catalog=MappingCatalog({}), config=config)
    async with first.router.lifespan_context(first):
        transport = httpx.ASGITransport(app=first)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
            admin = {"Authorization": f"Bearer {MASTER}"}
            key = (
                await c.post("/v1/admin/keys", json={"name": "k", "scopes": ["runs:read", "runs:write"]}, headers=admin)
            ).json()["key"]
            auth = {"Authorization": f"Bearer {key}"}
            run_id = (await c.post("/v1/pipelines/nap/runs", json={"inputs": {"seconds": 2}}, headers=auth)).json()[
                "id"
            ]
            with anyio.fail_after(30):
                while (await c.get(f"/v1/runs/{run_id}", headers=auth)).json()["status"] != "running":
                    await anyio.sleep(0.02)
    # The first gateway is gone; the run was neither finished nor marked failed.
    second = create_app(settings, catalog=MappingCatalog({}), config=config)
    async with second.router.lifespan_context(second):
        transport = httpx.ASGITransport(app=second)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
            first_look = (await c.get(f"/v1/runs/{run_id}", headers=auth)).json()
            assert first_look["status"] in ("pending", "running")
            with anyio.fail_after(60):
                while (run := (await c.get(f"/v1/runs/{run_id}", headers=auth)).json())["status"] == "running":
                    await anyio.sleep(0.05)
            assert run["status"] == "succeeded"
            assert run["outputs"] == {"sleep": "rested"}
            # the draining gateway released the lease: a clean stop, not a worker death charged to the run
            assert run["recoveries"] == 0
            assert run["cancelled_by"] is None
