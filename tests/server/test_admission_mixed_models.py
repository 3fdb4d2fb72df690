"""Adaptive admission against a real ``legato serve`` serving a fast and a slow model:
the limit follows the gateway's own share of a call's latency, so a model that takes
300 ms is not taken for queueing behind a baseline a 1 ms model set."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from _serve import MASTER, serving

CONFIG = """\
models:
  quick:
    provider: python
    model: mixed_models:quick
  slow:
    provider: python
    model: mixed_models:slow
server:
  master_key: env:MIXED_MASTER_KEY
  max_connections_per_client: 0
"""

MODELS = """\
import asyncio


async def quick(request):
    return "quick"


async def slow(request):
    await asyncio.sleep(0.3)
    return "slow"
"""


def test_a_slow_model_is_not_shed_behind_a_fast_models_baseline(tmp_path: Path) -> None:
    (tmp_path / "legato.yaml").write_text(CONFIG)
    (tmp_path / "mixed_models.py").write_text(MODELS)
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p)
    env = {"MIXED_MASTER_KEY": MASTER, "PYTHONPATH": path}
    limits = httpx.Limits(max_connections=24, max_keepalive_connections=24)
    with (
        serving(tmp_path / "legato.yaml", env=env) as gateway,
        ThreadPoolExecutor(24) as pool,
        httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {MASTER}"}, limits=limits) as http,
    ):

        def call(model: str) -> int:
            body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
            return http.post("/v1/chat/completions", json=body, timeout=30).status_code

        def admission() -> dict[str, Any]:
            with gateway.client(MASTER) as c:
                return dict(c.get("/readyz").json()["checks"]["admission"])

        # The baseline: a model answering at once, well below capacity, until a window
        # (at least 0.25 s) of its calls has been measured.
        with ThreadPoolExecutor(2) as pair:
            for _ in range(100):
                assert set(pair.map(call, ["quick"] * 100)) == {200}
                before = admission()
                if before["baseline_ms"] is not None:
                    break
        statuses = [s for _ in range(8) for s in pool.map(call, ["slow"] * 24)]  # 24 at a time, 8 rounds
        after = admission()
    assert before["baseline_ms"] is not None  # windows of quick calls were measured
    assert statuses == [200] * len(statuses), (before, after)
    assert after["rejected"] == 0
    assert after["limit"] >= 24
