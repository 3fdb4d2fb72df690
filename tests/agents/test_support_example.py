"""examples/support_agent.yaml runs with the real CLI, the fake provider playing the
model from examples/support_agent.fake.yaml and the reference MCP time server."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from pathlib import Path

import anyio
import yaml

from legato.testing import FakeProvider, load_script

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


async def test_the_support_agent_example_runs_offline(tmp_path: Path) -> None:
    config = yaml.safe_load((EXAMPLES / "support_agent.legato.yaml").read_text())
    script = load_script(EXAMPLES / "support_agent.fake.yaml")
    async with FakeProvider.from_script(script) as fake:
        config["models"]["support"]["base_url"] = fake.openai_base_url
        (tmp_path / "legato.yaml").write_text(yaml.safe_dump(config))
        bin_dir = str(Path(sys.executable).parent)  # where mcp-server-time is installed
        env = {
            **os.environ,
            "LEGATO_CONFIG": str(tmp_path / "legato.yaml"),
            "SUPPORT_ORDERS_DB": str(tmp_path / "orders.db"),
            "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        }
        command = [
            sys.executable, "-c", "from legato.cli import main; main()",
            "run", str(EXAMPLES / "support_agent.yaml"), "--json",
            "-i", "ticket=My order A-1001 came a week late.", "--database-url", f"sqlite:///{tmp_path / 'runs.db'}",
        ]  # fmt: skip
        done = await anyio.run_process(command, env=env, cwd=tmp_path, check=False)
        assert done.returncode == 0, done.stderr.decode()
        requests = fake.requests_for("openai.chat")

    result = json.loads(done.stdout)
    outputs = result.get("result") or result["outputs"]
    assert outputs["reply"].startswith("Sorry that A-1001 arrived late.")
    used = {c["name"]: c for c in outputs["tools_used"]}
    assert json.loads(used["lookup_order"]["content"])["customer"] == "Maria Lopez"
    assert json.loads(used["get_current_time"]["content"])["timezone"] == "UTC"
    assert json.loads(used["refund"]["content"])["status"] == "refunded"
    with sqlite3.connect(tmp_path / "orders.db") as conn:
        assert conn.execute("SELECT order_id, amount FROM refunds").fetchall() == [("A-1001", 20.0)]
    assert len(requests) == 3
    assert [t["function"]["name"] for t in requests[0].body["tools"]] == ["lookup_order", "refund", "get_current_time"]
    schema = requests[0].body["tools"][1]["function"]["parameters"]
    assert schema["properties"]["amount"]["exclusiveMinimum"] == 0
    assert schema["required"] == ["order_id", "amount", "reason"]
