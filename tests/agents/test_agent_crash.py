"""kill -9 in the middle of an agent step, then resume: no finished model call and no
finished tool call happens again.

A real process runs a durable pipeline whose agent step makes five model turns
against the fake provider; turns 1-4 each ask for two tool calls at once, and each
tool call appends its call id to a side-effect log. The fake holds back its answer to
the fourth turn; while that model call is in flight the test SIGKILLs the worker,
then resumes the run (as a recovering worker would). The fake's request log and the
side-effect log prove that the three answered turns and their six tool calls were
replayed from the store, not made again.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest

from legato.providers import ToolCall, Usage
from legato.store import DurableRunner, RunStore
from legato.testing import FakeProvider, RecordedRequest, Reply

WORKER = Path(__file__).with_name("agent_crash_worker.py")
TURNS = 5  # four turns of two tool calls each, then the answer
HELD = 4  # the turn whose model call is in flight at the kill


def load_worker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("legato_agent_crash_worker", WORKER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def turn_of(request: RecordedRequest) -> int:
    """Which turn a chat request is: one more than the assistant messages it carries."""
    return 1 + sum(1 for m in request.body["messages"] if m["role"] == "assistant")


class Script:
    def __init__(self) -> None:
        self.held = False

    def __call__(self, request: RecordedRequest) -> Reply:
        turn = turn_of(request)
        usage = Usage(input_tokens=50 * turn, output_tokens=10)
        if turn == TURNS:
            return Reply(text="All recorded.", usage=usage)
        calls = [
            ToolCall(id=f"t{turn}{side}", name="record", arguments=json.dumps({"tag": f"t{turn}{side}"}))
            for side in "ab"
        ]
        delay = 0.0
        if turn == HELD and not self.held:  # the first process never gets this answer
            self.held = True
            delay = 3.0
        return Reply(tool_calls=calls, finish_reason="tool_calls", usage=usage, delay=delay)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'legato.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.mark.slow
async def test_sigkill_mid_agent_repeats_no_model_call_and_no_tool_call(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    effects = tmp_path / "effects.log"
    monkeypatch.setenv("AGENT_EFFECTS", str(effects))
    key = f"agent-crash-{os.urandom(4).hex()}"
    async with FakeProvider(seed=0, responder=Script()) as fake:
        base_url = fake.openai_base_url
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen([sys.executable, str(WORKER), database_url, base_url, key], env=env)
        try:
            with anyio.fail_after(60):
                while not any(turn_of(r) == HELD for r in fake.requests_for("openai.chat")):
                    assert proc.poll() is None, f"the worker exited early ({proc.returncode})"
                    await anyio.sleep(0.005)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
        before = Counter(effects.read_text().split())
        assert before == Counter({f"t{t}{s}": 1 for t in range(1, HELD) for s in "ab"})

        worker = load_worker()
        async with RunStore(database_url) as store:
            run = await store.find_by_idempotency_key(key)
            assert run is not None
            assert run.status == "running"  # orphaned mid-agent
            rows = await store.map_items(run.id)
            assert len(rows["journal:answer"]) == 3 * (HELD - 1)  # three turns, six tool calls
            result = await DurableRunner(store, reflect=None).run(
                worker.build_pipeline(base_url), {}, idempotency_key=key
            )
            assert result.ok, result.error
            assert await store.map_items(run.id) == {}  # the journal goes with the finished step

        requests = fake.requests_for("openai.chat")

    # The run's ledger counts the turns paid for before the crash as well.
    assert result.usage["calls"] == TURNS
    assert result.usage["input_tokens"] == sum(50 * t for t in range(1, TURNS + 1))
    output: dict[str, Any] = result.outputs["answer"]
    assert output["text"] == "All recorded."
    assert output["turns"] == TURNS
    # Every tool call ran exactly once, across both processes.
    assert Counter(effects.read_text().split()) == Counter({f"t{t}{s}": 1 for t in range(1, TURNS) for s in "ab"})
    # Each turn reached the provider once, except the one in flight at the kill.
    assert Counter(turn_of(r) for r in requests) == Counter({1: 1, 2: 1, 3: 1, HELD: 2, 5: 1})
    # The resumed model calls carried the replayed conversation.
    resumed = [r for r in requests if turn_of(r) == HELD][-1]
    results = [m["content"] for m in resumed.body["messages"] if m["role"] == "tool"]
    assert results == [f"recorded t{t}{s}" for t in range(1, HELD) for s in "ab"]
