"""One durable run of an agent step, to be SIGKILLed mid-agent (used by test_agent_crash).

``python agent_crash_worker.py DATABASE_URL MODEL_BASE_URL KEY`` with ``AGENT_EFFECTS``
naming the side-effect log: every tool call appends its call id to it (one
``O_APPEND`` write), so the file counts how many times each call really ran.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio

from legato.config import LegatoConfig
from legato.engine import Pipeline
from legato.spec import load_pipeline
from legato.store import DurableRunner, RunStore

PIPELINE = """\
name: agent_crash
steps:
  answer:
    agent: fast
    prompt: Record everything.
    tools: [{worker}:record]
    max_turns: 10
"""


def record(tag: str) -> str:
    """Record a tag (a side effect that must happen once)."""
    fd = os.open(os.environ["AGENT_EFFECTS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{tag}\n".encode())
    finally:
        os.close(fd)
    return f"recorded {tag}"


def build_pipeline(base_url: str) -> Pipeline:
    config = LegatoConfig({"models": {"fast": {"provider": "openai", "model": "gpt-4o-mini", "base_url": base_url}}})
    return load_pipeline(PIPELINE.format(worker=Path(__file__).resolve()), config=config)


async def main(url: str, base_url: str, key: str) -> None:
    async with RunStore(url) as store:
        result = await DurableRunner(store, reflect=None).run(build_pipeline(base_url), {}, idempotency_key=key)
    print(result.status, flush=True)


if __name__ == "__main__":
    database_url, model_url, run_key = sys.argv[1:4]
    anyio.run(main, database_url, model_url, run_key)
