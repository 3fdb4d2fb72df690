"""examples/support_agent.yaml runs with the real CLI, the fake provider playing the
model from examples/support_agent.fake.yaml and the reference MCP time server: the
agent's refund over the limit pauses the run on the ``approve`` wait step, and
``legato runs respond ... --approve`` makes the refund and finishes the run."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import anyio
import yaml

from legato.providers import ToolCall
from legato.testing import FakeProvider, Reply, load_script

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


async def legato(tmp_path: Path, *args: str) -> dict[str, Any]:
    """Run the CLI with --json against the example's store; the parsed output."""
    bin_dir = str(Path(sys.executable).parent)  # where mcp-server-time is installed
    env = {
        **os.environ,
        "LEGATO_CONFIG": str(tmp_path / "legato.yaml"),
        "SUPPORT_ORDERS_DB": str(tmp_path / "orders.db"),
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
    }
    command = [
        sys.executable, "-c", "from legato.cli import main; main()",
        *args, "--json", "--database-url", f"sqlite:///{tmp_path / 'runs.db'}",
    ]  # fmt: skip
    done = await anyio.run_process(command, env=env, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr.decode()
    parsed: dict[str, Any] = json.loads(done.stdout)
    return parsed


def configure(tmp_path: Path, fake: FakeProvider) -> None:
    config = yaml.safe_load((EXAMPLES / "support_agent.legato.yaml").read_text())
    config["models"]["support"]["base_url"] = fake.openai_base_url
    (tmp_path / "legato.yaml").write_text(yaml.safe_dump(config))


def refunds(tmp_path: Path) -> list[tuple[str, float]]:
    with sqlite3.connect(tmp_path / "orders.db") as conn:
        return conn.execute("SELECT order_id, amount FROM refunds").fetchall()


async def test_a_large_refund_waits_for_approval_then_is_made(tmp_path: Path) -> None:
    script = load_script(EXAMPLES / "support_agent.fake.yaml")
    async with FakeProvider.from_script(script) as fake:
        configure(tmp_path, fake)
        ticket = "ticket=My order A-1002 has not arrived after a week."
        paused = await legato(tmp_path, "run", str(EXAMPLES / "support_agent.yaml"), "-i", ticket)
        requests = fake.requests_for("openai.chat")

    assert paused["status"] == "waiting"
    question = paused["waiting"]["approve"]
    assert question["kind"] == "approval"
    assert question["question"] == "Refund 249.0 USD of A-1002 (not delivered after a week)?"
    assert refunds(tmp_path) == []  # nothing refunded before a person approves
    assert len(requests) == 3
    assert [t["function"]["name"] for t in requests[0].body["tools"]] == ["lookup_order", "refund", "get_current_time"]
    schema = requests[0].body["tools"][1]["function"]["parameters"]
    assert schema["properties"]["amount"]["exclusiveMinimum"] == 0
    assert schema["required"] == ["order_id", "amount", "reason"]

    # the fake provider is gone: the answer resumes the run without calling the model again
    done = await legato(tmp_path, "runs", "respond", paused["run_id"][:10], "approve", "--approve", "--by", "ops")
    assert done["status"] == "succeeded"
    outputs = done.get("result") or done["outputs"]
    assert outputs["reply"].startswith("Sorry that A-1002 has still not arrived.")
    used = {c["name"]: c for c in outputs["tools_used"]}
    assert json.loads(used["lookup_order"]["content"])["customer"] == "Sam Chen"
    assert json.loads(used["get_current_time"]["content"])["timezone"] == "UTC"
    assert json.loads(used["refund"]["content"])["status"] == "needs_approval"
    assert outputs["approved_refund"] == {"status": "refunded", "refund_id": 1, "amount": 249.0}
    assert refunds(tmp_path) == [("A-1002", 249.0)]


async def test_a_small_refund_is_made_by_the_agent_without_a_person(tmp_path: Path) -> None:
    small = {"order_id": "A-1001", "amount": 20, "reason": "delivered a week late"}
    async with FakeProvider() as fake:
        fake.script(
            Reply(
                tool_calls=[ToolCall(id="c1", name="refund", arguments=json.dumps(small))], finish_reason="tool_calls"
            ),
            Reply(text="I have refunded 20.00 USD."),
        )
        configure(tmp_path, fake)
        ticket = "ticket=My order A-1001 came a week late."
        done = await legato(tmp_path, "run", str(EXAMPLES / "support_agent.yaml"), "-i", ticket)

    assert done["status"] == "succeeded"
    outputs = done.get("result") or done["outputs"]
    assert outputs["reply"] == "I have refunded 20.00 USD."
    assert outputs["approved_refund"] is None
    assert refunds(tmp_path) == [("A-1001", 20.0)]
