"""The first model call of a process does not stall the event loop: what runs on first
use (importing the HTTP client, loading the trust store) runs off the loop, so a
10 ms timer in a parallel step fires on time while that call starts.

Each probe is a fresh interpreter (the first call of *a process* is what is measured).
Before the fix the loop stalled 150-550 ms on every probe; the bound of 100 ms on the
best of three probes keeps the test steady on a loaded two-core machine while still
failing on any regression.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

PROBE = textwrap.dedent(
    """
    import asyncio, json, os, sys, time
    import anyio
    from legato.config import LegatoConfig
    from legato.spec import load_pipeline
    from legato.testing import FakeProvider

    assert "aiohttp" not in sys.modules, "the probe must make the first call of the process"
    SPEC = '''
    name: lag
    steps:
      ask:
        llm: fast
        prompt: hello
      tick:
        uses: ./ticks.py:tick
    '''

    async def probe(pipeline):
        lags, done = [], False

        async def monitor():
            while not done:
                started = time.perf_counter()
                await asyncio.sleep(0.001)
                lags.append(time.perf_counter() - started - 0.001)

        async with anyio.create_task_group() as tg:
            tg.start_soon(monitor)
            await anyio.sleep(0.05)
            result = await pipeline.run()
            done = True
        return result, max(lags)

    with FakeProvider().in_thread() as fake:
        with open("legato.yaml", "w") as f:
            f.write("models:\\n  fast: {provider: openai, model: gpt-4o-mini, base_url: '%s/v1', "
                    "api_key: env:OPENAI_API_KEY}\\n" % fake.base_url)
        pipeline = load_pipeline(SPEC, config=LegatoConfig.load("legato.yaml"))
        result, lag = anyio.run(probe, pipeline)
        assert result.ok, result.error
        print(json.dumps({"lag": lag, "tick": result.outputs["tick"]}))
    """
)

TICKS = """
import time

import anyio


async def tick() -> float:
    started = time.perf_counter()
    await anyio.sleep(0.01)
    return time.perf_counter() - started
"""


def run_probe(tmp_path: Path) -> dict[str, float]:
    (tmp_path / "ticks.py").write_text(TICKS, encoding="utf-8")
    env = {**os.environ, "OPENAI_API_KEY": "sk-test", "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    env.pop("LEGATO_CONFIG", None)
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_a_timer_fires_on_time_while_the_first_model_call_starts(tmp_path: Path) -> None:
    probes = []
    for attempt in range(3):
        folder = tmp_path / str(attempt)
        folder.mkdir()
        probes.append(run_probe(folder))
        if probes[-1]["lag"] < 0.1:
            break
    best = min(probes, key=lambda p: p["lag"])
    assert best["lag"] < 0.1, probes
    assert best["tick"] < 0.11, probes
