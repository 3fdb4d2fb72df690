"""The MCP server over stdio, driven by the ``mcp`` SDK's own client."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from mcp import Client, StdioServerParameters

STEPS = """
async def words(text: str) -> list[str]:
    return text.split()


async def shout(words: list[str]) -> str:
    return " ".join(w.upper() for w in words)
"""

PIPELINE = """
name: shouter
description: Split a text into words and shout them.
inputs: {text: string}
steps:
  words: {uses: ./steps.py:words}
  shout: {uses: ./steps.py:shout}
"""


def structured(result: Any) -> Any:
    assert not result.is_error, result.content
    data = result.structured_content
    return data["result"] if isinstance(data, dict) and set(data) == {"result"} else data


async def test_journal_and_run_tools_over_stdio(tmp_path: Path) -> None:
    (tmp_path / "steps.py").write_text(STEPS)
    (tmp_path / "shouter.yaml").write_text(PIPELINE)
    params = StdioServerParameters(
        command=sys.executable,
        args=[
            "-c", "from legato.cli import main; main()",
            "mcp", "--pipeline", str(tmp_path / "shouter.yaml"), "--database-url", str(tmp_path / "mcp.db"),
        ],
        cwd=str(tmp_path),
        env=dict(os.environ),  # the SDK's default environment drops PYTHONPATH: serve the code under test
    )  # fmt: skip
    async with Client(params) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        assert tools == {
            "process_thoughts", "search_journal", "list_recent_entries", "read_journal_entry",
            "list_pipelines", "run_pipeline", "list_runs", "get_run", "respond_to_run", "analyze_pipeline",
        }  # fmt: skip

        entry = structured(
            await client.call_tool(
                "process_thoughts",
                {"thoughts": "OpenAI returns 429 above 10 rps\nKeep max_concurrency at 4.", "tags": ["openai"]},
            )
        )
        assert entry["title"] == "OpenAI returns 429 above 10 rps"
        await client.call_tool("process_thoughts", {"thoughts": "Tesseract is slow on scans", "title": "OCR speed"})
        hits = structured(await client.call_tool("search_journal", {"query": "openai 429 rate"}))
        assert hits[0]["id"] == entry["id"]
        recent = structured(await client.call_tool("list_recent_entries", {"limit": 1}))
        assert [e["title"] for e in recent] == ["OCR speed"]
        read = structured(await client.call_tool("read_journal_entry", {"entry_id": entry["id"]}))
        assert read["body"].endswith("Keep max_concurrency at 4.")

        pipelines = structured(await client.call_tool("list_pipelines", {}))
        assert pipelines == [
            {
                "name": "shouter",
                "description": "Split a text into words and shout them.",
                "inputs": {"text": {"type": "string", "required": True}},
                "steps": ["words", "shout"],
            }
        ]
        args = {"name": "shouter", "inputs": {"text": "no more retries"}, "idempotency_key": "m1"}
        run = structured(await client.call_tool("run_pipeline", args))
        assert run["status"] == "succeeded"
        assert run["outputs"]["shout"] == "NO MORE RETRIES"
        again = structured(await client.call_tool("run_pipeline", args))
        assert again["run_id"] == run["run_id"]
        stored = structured(await client.call_tool("get_run", {"run_id": run["run_id"]}))
        assert stored["status"] == "succeeded"
        assert [(s["step"], s["status"]) for s in stored["steps"]] == [("words", "succeeded"), ("shout", "succeeded")]
        second = structured(await client.call_tool("run_pipeline", {"name": "shouter", "inputs": {"text": "b"}}))
        shared = os.path.commonprefix([run["run_id"], second["run_id"]])  # noqa: RUF071 (ids, not paths)
        by_prefix = structured(await client.call_tool("get_run", {"run_id": run["run_id"][: len(shared) + 1]}))
        assert by_prefix["run_id"] == run["run_id"]
        ambiguous = await client.call_tool("get_run", {"run_id": shared})
        assert ambiguous.is_error
        assert run["run_id"] in ambiguous.content[0].text
        assert second["run_id"] in ambiguous.content[0].text

        # mistakes come back as tool errors that name the problem
        missing = await client.call_tool("get_run", {"run_id": "nope"})
        assert missing.is_error
        assert "no run with id 'nope'" in missing.content[0].text
        unknown = await client.call_tool("run_pipeline", {"name": "nope"})
        assert unknown.is_error
        assert "no pipeline 'nope'; available: shouter" in unknown.content[0].text
        bad = await client.call_tool("run_pipeline", {"name": "shouter", "inputs": {"txt": "x"}})
        assert bad.is_error
        assert "unknown input 'txt'" in bad.content[0].text
        empty = await client.call_tool("process_thoughts", {"thoughts": "  "})
        assert empty.is_error


APPROVAL = """
name: gate
inputs: {text: string}
steps:
  words: {uses: ./steps.py:words}
  approve:
    wait: {kind: approval, question: "Shout ${inputs.text}?"}
  shout: {uses: ./steps.py:shout, when: steps.approve}
"""


async def test_a_waiting_run_is_answered_with_respond_to_run(tmp_path: Path) -> None:
    (tmp_path / "steps.py").write_text(STEPS)
    (tmp_path / "gate.yaml").write_text(APPROVAL)
    params = StdioServerParameters(
        command=sys.executable,
        args=[
            "-c", "from legato.cli import main; main()",
            "mcp", "--pipeline", str(tmp_path / "gate.yaml"), "--database-url", str(tmp_path / "mcp.db"),
        ],
        cwd=str(tmp_path),
        env=dict(os.environ),
    )  # fmt: skip
    async with Client(params) as client:
        run = structured(await client.call_tool("run_pipeline", {"name": "gate", "inputs": {"text": "go"}}))
        assert run["status"] == "waiting"
        assert run["waiting"]["approve"]["question"] == "Shout go?"
        bad = await client.call_tool("respond_to_run", {"run_id": run["run_id"], "step": "approve", "value": "sure"})
        assert bad.is_error
        assert "'sure' is not of type 'boolean'" in bad.content[0].text
        args = {"run_id": run["run_id"], "step": "approve", "approved": True}
        done = structured(await client.call_tool("respond_to_run", args))
        assert done["status"] == "succeeded"
        assert done["outputs"]["shout"] == "GO"
        again = await client.call_tool("respond_to_run", args)
        assert again.is_error
        assert "is not waiting for an answer" in again.content[0].text
