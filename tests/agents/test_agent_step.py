"""The ``agent:`` YAML step kind: Python, step, pipeline and MCP tools."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
import uvicorn

from legato.config import LegatoConfig
from legato.engine import ModelCalled
from legato.errors import SpecError
from legato.providers import ToolCall, Usage
from legato.spec import load_pipeline
from legato.testing import FakeProvider, Reply
from legato.testing.pytest_plugin import fake_provider

__all__ = ["fake_provider"]

TOOLS = '''\
import json
from pathlib import Path

ORDERS = {"A-1": {"state": "shipped", "total": 40}}


def lookup_order(order_id: str) -> dict:
    """Find an order by id.

    Args:
        order_id: The order id, like "A-1".
    """
    return ORDERS.get(order_id) or {"error": "no such order"}


def refund_amount(total: float, share: float) -> float:
    """How much to refund."""
    with Path(__file__).with_name("refunds.log").open("a") as log:
        log.write(json.dumps([total, share]) + "\\n")
    return round(total * share, 2)


def eta(order_id: str) -> str:
    return f"{order_id}: two days"
'''

SHIPPING = """\
name: shipping
description: When an order arrives.
inputs:
  order_id: {type: string, description: The order id}
steps:
  eta:
    uses: ./tools.py:eta
outputs:
  eta: ${steps.eta}
"""

PIPELINE = """\
name: support
inputs:
  question: {type: string}
steps:
  refund_amount:
    tool: true
    uses: ./tools.py:refund_amount
    with: {share: 0.5}
  answer:
    agent: fast
    system: You are a support agent.
    prompt: "Customer asks: ${inputs.question}"
    tools:
      - ./tools.py:lookup_order
      - step:refund_amount
      - pipeline:./shipping.yaml
    max_turns: 4
outputs:
  answer: ${steps.answer.text}
  calls: ${steps.answer.tool_calls}
"""


def write(tmp_path: Path, base: str, extra: str = "", provider: str = "openai") -> LegatoConfig:
    (tmp_path / "tools.py").write_text(TOOLS)
    (tmp_path / "shipping.yaml").write_text(SHIPPING)
    if provider == "openai":
        model = f"{{provider: openai, model: gpt-4o-mini, base_url: '{base}/v1'}}"
    else:
        model = f"{{provider: anthropic, model: claude-3-5-haiku-latest, base_url: '{base}'}}"
    path = tmp_path / "legato.yaml"
    path.write_text(f"models:\n  fast: {model}\n{extra}")
    return LegatoConfig.load(path)


def calls(*items: tuple[str, str, dict[str, Any]]) -> Reply:
    tool_calls = [ToolCall(id=i, name=n, arguments=json.dumps(a)) for i, n, a in items]
    return Reply(
        text="", tool_calls=tool_calls, finish_reason="tool_calls", usage=Usage(input_tokens=9, output_tokens=3)
    )


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_agent_step_with_function_step_and_pipeline_tools(
    tmp_path: Path, fake_provider: FakeProvider, provider: str
) -> None:
    config = write(tmp_path, fake_provider.base_url, provider=provider)
    (tmp_path / "support.yaml").write_text(PIPELINE)
    pipeline = load_pipeline(tmp_path / "support.yaml", config=config)
    assert "refund_amount" not in pipeline.steps  # a tool step is not scheduled by itself
    fake_provider.script(
        calls(
            ("c1", "lookup_order", {"order_id": "A-1"}),
            ("c2", "refund_amount", {"total": 40}),
            ("c3", "shipping", {"order_id": "A-1"}),
        ),
        Reply(text="Shipped; refund 20; arrives in two days.", usage=Usage(input_tokens=30, output_tokens=9)),
    )
    events: list[Any] = []
    result = await pipeline.run(question="Where is A-1?", subscribers=[events.append])
    result.raise_for_status()

    assert result.result["answer"] == "Shipped; refund 20; arrives in two days."
    turns = [e.call for e in events if isinstance(e, ModelCalled) and e.step == "answer"]  # each turn, recorded
    assert [(t["status"], t["output_tokens"]) for t in turns] == [("ok", 3), ("ok", 9)]
    assert turns[0]["prompt"].startswith("system: You are a support agent.\nuser: Customer asks: Where is A-1?")
    assert turns[1]["answer"] == "Shipped; refund 20; arrives in two days."
    contents = {c["name"]: c["content"] for c in result.result["calls"]}
    assert json.loads(contents["lookup_order"]) == {"state": "shipped", "total": 40}
    assert contents["refund_amount"] == "20.0"
    assert json.loads(contents["shipping"]) == {"eta": "A-1: two days"}
    assert (tmp_path / "refunds.log").read_text() == "[40.0, 0.5]\n"
    first = fake_provider.requests[0].body
    names = sorted(t["function"]["name"] if provider == "openai" else t["name"] for t in first["tools"])
    assert names == ["lookup_order", "refund_amount", "shipping"]
    step_usage = result.usage
    assert step_usage["calls"] == 2
    assert step_usage["input_tokens"] == 39


async def test_limits_fail_the_step_unless_told_to_return(tmp_path: Path, fake_provider: FakeProvider) -> None:
    config = write(tmp_path, fake_provider.base_url)
    fake_provider.default = calls(("x", "lookup_order", {"order_id": "A-1"}))
    text = PIPELINE.replace("max_turns: 4", "max_turns: 2")
    result = await load_pipeline(text.replace("./", str(tmp_path) + "/"), config=config).run(question="q")
    assert result.failed_step == "answer"
    assert "AgentLimitReached" in (result.error or "")
    assert "max_turns reached after 2 turn(s)" in (result.error or "")

    text = text.replace("max_turns: 2", "max_turns: 2\n    on_limit: return")
    result = await load_pipeline(text.replace("./", str(tmp_path) + "/"), config=config).run(question="q")
    result.raise_for_status()
    assert result.outputs["answer"]["outcome"] == "max_turns"
    assert result.outputs["answer"]["turns"] == 2


@pytest.mark.parametrize(
    ("tools", "expected"),
    [
        ("[step:nope]", "no step named 'nope'"),
        ("[step:plain]", "step 'plain' is not marked 'tool: true'"),
        ("[pipeline:./missing.yaml]", "no pipeline file './missing.yaml'"),
        ("[./tools.py:nothing]", "has no attribute 'nothing'"),
        ("[mcp:time]", "must look like 'mcp:SERVER/TOOL'"),
        ("[mcp:tyme/get_current_time]", "no MCP server 'tyme' in the mcp_servers section of legato.yaml"),
        ("[mcp:time/delete_all]", "tool 'delete_all' of MCP server 'time' is not allowed"),
        ("[./tools.py:lookup_order, ./tools.py:lookup_order]", "two tools are named 'lookup_order'"),
    ],
)
def test_tool_references_are_checked_at_load_time(tmp_path: Path, tools: str, expected: str) -> None:
    config = write(tmp_path, "http://127.0.0.1:9", extra=MCP_CONFIG)
    text = f"""\
name: broken
steps:
  plain:
    uses: ./tools.py:eta
    with: {{order_id: A-1}}
  answer:
    agent: fast
    prompt: hi
    tools: {tools}
"""
    (tmp_path / "broken.yaml").write_text(text)
    with pytest.raises(SpecError) as caught:
        load_pipeline(tmp_path / "broken.yaml", config=config)
    message = str(caught.value)
    assert expected in message
    assert message.count("broken.yaml:") == 1  # located once


def test_a_tool_step_with_references_is_refused(tmp_path: Path) -> None:
    config = write(tmp_path, "http://127.0.0.1:9")
    text = PIPELINE.replace("with: {share: 0.5}", "with: {share: '${inputs.question}'}")
    (tmp_path / "p.yaml").write_text(text)
    with pytest.raises(SpecError, match="share must be fixed values"):
        load_pipeline(tmp_path / "p.yaml", config=config)


TOKYO = "Asia/Tokyo"
MCP_CONFIG = f"""\
mcp_servers:
  time:
    command: {sys.executable}
    args: ["-m", "mcp_server_time", "--local-timezone", "UTC"]
    tools: [get_current_time, convert_time]
"""


async def test_agent_calls_a_real_mcp_server_over_stdio(tmp_path: Path, fake_provider: FakeProvider) -> None:
    config = write(tmp_path, fake_provider.base_url, extra=MCP_CONFIG)
    text = """\
name: clock
steps:
  answer:
    agent: fast
    prompt: What time is it in Tokyo, and 9:30 in London in Tokyo time?
    tools: [mcp:time/get_current_time, mcp:time/convert_time]
"""
    fake_provider.script(
        calls(
            ("t1", "get_current_time", {"timezone": "Asia/Tokyo"}),
            (
                "t2",
                "convert_time",
                {"source_timezone": "Europe/London", "time": "09:30", "target_timezone": "Asia/Tokyo"},
            ),
            ("t3", "get_current_time", {"timezone": "Mars/Olympus"}),
        ),
        Reply(text="Done."),
    )
    result = await load_pipeline(text, config=config).run()
    result.raise_for_status()

    calls_made = {c["id"]: c for c in result.outputs["answer"]["tool_calls"]}
    now = json.loads(calls_made["t1"]["content"])
    assert now["timezone"] == "Asia/Tokyo"
    converted = json.loads(calls_made["t2"]["content"])
    assert converted["target"]["timezone"] == "Asia/Tokyo"
    assert converted["target"]["datetime"][11:16] in {"17:30", "18:30"}  # summer or winter time in London
    assert calls_made["t3"]["error"] == "raised"
    assert "Mars/Olympus" in calls_made["t3"]["content"]
    tools = fake_provider.requests[0].body["tools"]
    assert sorted(t["function"]["name"] for t in tools) == ["convert_time", "get_current_time"]
    schema = next(t["function"]["parameters"] for t in tools if t["function"]["name"] == "convert_time")
    assert "source_timezone" in schema["properties"]


async def test_agent_calls_an_mcp_server_over_streamable_http(
    tmp_path: Path, fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("inventory")
    seen: list[str | None] = []

    @server.tool()
    def stock(sku: str) -> int:
        """Units in stock."""
        return {"apple": 3}.get(sku, 0)

    @server.tool()
    def wipe() -> str:
        """Not allowed by the config."""
        raise AssertionError("never called")

    inner = server.streamable_http_app()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            seen.append(dict(scope["headers"]).get(b"authorization", b"").decode() or None)
        await inner(scope, receive, send)

    monkeypatch.setenv("INVENTORY_TOKEN", "Bearer t0k3n")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    extra = f"""\
mcp_servers:
  inventory:
    url: http://127.0.0.1:{port}/mcp
    headers: {{Authorization: env:INVENTORY_TOKEN}}
    tools: [stock]
"""
    config = write(tmp_path, fake_provider.base_url, extra=extra)
    text = """\
name: shop
steps:
  answer:
    agent: fast
    prompt: How many apples?
    tools: [mcp:inventory/stock]
"""
    fake_provider.script(calls(("s1", "stock", {"sku": "apple"}), ("s2", "wipe", {})), Reply(text="3 apples."))
    web = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: web.serve(sockets=[sock]))
        with anyio.fail_after(30):
            while not web.started:
                await anyio.sleep(0.02)
        try:
            result = await load_pipeline(text, config=config).run()
        finally:
            web.should_exit = True
    result.raise_for_status()
    made = {c["id"]: c for c in result.outputs["answer"]["tool_calls"]}
    assert made["s1"]["content"] in {"3", '{"result":3}'}
    assert made["s2"]["error"] == "unknown_tool"  # offered by the server, but not allowed
    assert seen
    assert set(seen) == {"Bearer t0k3n"}


async def test_a_retried_agent_step_repeats_no_model_call_and_no_tool_call(
    tmp_path: Path, fake_provider: FakeProvider
) -> None:
    config = write(tmp_path, fake_provider.base_url)
    (tmp_path / "flaky.py").write_text(
        '''\
from pathlib import Path

LOG = Path(__file__).with_name("effects.log")


def charge(amount: int) -> str:
    """Charge the card."""
    with LOG.open("a") as log:
        log.write(f"charge {amount}\\n")
    return "charged"


def notify(text: str) -> str:
    """Tell the customer; fails the first time."""
    with LOG.open("a") as log:
        log.write(f"notify {text}\\n")
    if LOG.read_text().count("notify") == 1:
        raise ConnectionError("mail server down")
    return "sent"
'''
    )
    text = f"""\
name: billing
steps:
  bill:
    agent: fast
    prompt: Charge 5 and tell them.
    tools: [{tmp_path}/flaky.py:charge, {tmp_path}/flaky.py:notify]
    on_tool_error: raise
    retries: 1
"""
    fake_provider.script(
        calls(("c1", "charge", {"amount": 5}), ("n1", "notify", {"text": "done"})),
        Reply(text="Charged and told."),
    )
    result = await load_pipeline(text, config=config).run()
    result.raise_for_status()

    assert result.outputs["bill"]["text"] == "Charged and told."
    effects = (tmp_path / "effects.log").read_text().splitlines()  # the two calls of a turn run concurrently
    assert sorted(effects) == ["charge 5", "notify done", "notify done"]
    assert len(fake_provider.requests) == 2  # the first turn was not asked again
    assert result.timings["bill"].attempts == 2
    assert result.usage["calls"] == 2  # the replayed turn is not counted twice


async def test_an_mcp_server_that_cannot_start_fails_the_step_clearly(
    tmp_path: Path, fake_provider: FakeProvider
) -> None:
    extra = """\
mcp_servers:
  ghost:
    command: legato-no-such-mcp-server
    tools: [haunt]
"""
    config = write(tmp_path, fake_provider.base_url, extra=extra)
    text = """\
name: ghostly
steps:
  answer:
    agent: fast
    prompt: boo
    tools: [mcp:ghost/haunt]
"""
    result = await load_pipeline(text, config=config).run()
    assert result.failed_step == "answer"
    assert result.error is not None
    assert "AgentError" in result.error
    assert "MCP server 'ghost' (legato-no-such-mcp-server) could not be reached" in result.error
    assert fake_provider.requests == []  # no model call before the tools are ready


async def test_an_agent_step_mapped_over_questions(tmp_path: Path, fake_provider: FakeProvider) -> None:
    config = write(tmp_path, fake_provider.base_url)
    text = f"""\
name: many
inputs:
  questions: {{type: list}}
steps:
  answer:
    agent: fast
    prompt: ${{inputs.questions}}
    map: prompt
    max_concurrency: 2
    tools: [{tmp_path}/tools.py:lookup_order]
"""

    def respond(request: Any) -> Reply:
        messages = request.body["messages"]
        if messages[-1]["role"] == "tool":
            return Reply(text=f"answer to {messages[0]['content']}")
        return calls((f"c-{messages[0]['content']}", "lookup_order", {"order_id": "A-1"}))

    fake_provider.responder = respond
    result = await load_pipeline(text, config=config).run(questions=["q1", "q2", "q3"])
    result.raise_for_status()
    assert [o["text"] for o in result.outputs["answer"]] == ["answer to q1", "answer to q2", "answer to q3"]
    assert all(o["turns"] == 2 for o in result.outputs["answer"])


def test_the_cost_estimate_counts_an_agent_step_as_max_turns_calls() -> None:
    from legato.cost import estimate_spec_cost
    from legato.spec import load_spec

    text = """\
name: estimate
steps:
  answer:
    agent: openai/gpt-4o-mini
    prompt: Where is my order?
    max_turns: 6
    max_tokens: 100
  capped:
    agent: openai/gpt-4o-mini
    prompt: Where is my order?
    max_cost: 0.000001
"""
    spec, _ = load_spec(text)
    plan = estimate_spec_cost(spec)
    answer, capped = plan.steps
    assert (answer.kind, answer.calls, answer.output_tokens) == ("agent", 6, 100)
    assert answer.usd is not None
    assert answer.usd > 0
    assert answer.note.startswith("upper bound: 6 turns per run")
    assert capped.calls == 10
    assert capped.usd == 0.000001
    assert "capped by max_cost" in capped.note
