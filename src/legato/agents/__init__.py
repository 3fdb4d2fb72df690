"""Agents: a model that calls tools in a loop until it answers.

::

    from legato.agents import Agent

    async def lookup_order(order_id: str) -> dict:
        '''Find an order.

        Args:
            order_id: The order id, like "A-1001".
        '''
        ...

    agent = Agent(model, tools=[lookup_order], system="You are a support agent.", max_turns=6)
    result = await agent.run("Where is my order A-1001?")
    result.outcome       # AgentOutcome.ANSWERED, MAX_TURNS, TOKEN_BUDGET, COST_BUDGET or DEADLINE
    result.text          # the answer

Tools are Python functions (:func:`function_tool`), steps and pipelines (the
``agent:`` step kind builds those) and tools of MCP servers (:class:`McpToolbox`).
Each turn and tool call can be recorded in an :class:`AgentJournal`, so a resumed
agent never repeats a model call or a tool call that finished. See ``docs/agents.md``.
"""

from legato.agents._agent import Agent
from legato.agents._journal import AgentJournal, MemoryJournal
from legato.agents._mcp import McpServerConfig, McpTool, McpToolbox
from legato.agents._result import AgentOutcome, AgentResult, ToolCallRecord, ToolErrorKind, Turn
from legato.agents._tools import AgentTool, FunctionTool, PipelineTool, function_tool

__all__ = [
    "Agent",
    "AgentJournal",
    "AgentOutcome",
    "AgentResult",
    "AgentTool",
    "FunctionTool",
    "McpServerConfig",
    "McpTool",
    "McpToolbox",
    "MemoryJournal",
    "PipelineTool",
    "ToolCallRecord",
    "ToolErrorKind",
    "Turn",
    "function_tool",
]
