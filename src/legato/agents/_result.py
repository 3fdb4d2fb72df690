"""What an agent run produced: its outcome, turns, tool calls, usage and cost."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from legato.errors import AgentLimitReached
from legato.providers import Message, ToolCall, Usage

__all__ = ["AgentOutcome", "AgentResult", "ToolCallRecord", "ToolErrorKind", "Turn"]


class AgentOutcome(StrEnum):
    """Why the agent stopped. Only ``ANSWERED`` means the model gave its final answer."""

    ANSWERED = "answered"  # the model answered without asking for a tool
    MAX_TURNS = "max_turns"  # max_turns model calls were made and the model still wanted tools
    TOKEN_BUDGET = "token_budget"  # max_total_tokens were spent  # noqa: S105 - not a password
    COST_BUDGET = "cost_budget"  # max_cost USD were spent
    DEADLINE = "deadline"  # the deadline passed


class ToolErrorKind(StrEnum):
    """How a tool call failed (``None`` on a :class:`ToolCallRecord` means it did not)."""

    UNKNOWN_TOOL = "unknown_tool"
    INVALID_ARGUMENTS = "invalid_arguments"
    RAISED = "raised"


@dataclass(frozen=True, slots=True)
class ToolCallRecord:
    """One tool call and what went back to the model as its result."""

    id: str
    name: str
    arguments: str
    content: str
    error: ToolErrorKind | None = None
    error_type: str | None = None  # the exception's class name when the tool raised
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "arguments": self.arguments,
            "content": self.content,
            "error": None if self.error is None else str(self.error),
            "error_type": self.error_type,
            "duration_s": self.duration_s,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToolCallRecord:
        error = data.get("error")
        return cls(
            id=data["id"],
            name=data["name"],
            arguments=data.get("arguments", "{}"),
            content=data.get("content", ""),
            error=None if error is None else ToolErrorKind(error),
            error_type=data.get("error_type"),
            duration_s=float(data.get("duration_s") or 0.0),
        )

    def message(self) -> Message:
        return Message(role="tool", content=self.content, tool_call_id=self.id, name=self.name)


@dataclass(frozen=True, slots=True)
class Turn:
    """One model call and the tool calls it asked for.

    ``input_tokens``, ``output_tokens`` and ``cost`` cover the whole turn: the model
    call (with any retries or fallbacks a router made) and the tools' own model
    calls; ``unpriced_calls`` counts calls whose price is unknown.
    """

    index: int
    message: Message
    model: str
    provider: str
    finish_reason: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    unpriced_calls: int = 0
    latency_s: float = 0.0
    tool_calls: tuple[ToolCallRecord, ...] = ()

    @property
    def requested(self) -> tuple[ToolCall, ...]:
        return tuple(self.message.tool_calls or ())

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "model": self.model,
            "provider": self.provider,
            "finish_reason": self.finish_reason,
            "text": self.message.text,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost": self.cost,
            "unpriced_calls": self.unpriced_calls,
            "latency_s": self.latency_s,
            "tool_calls": [c.to_dict() for c in self.tool_calls],
        }


@dataclass(frozen=True, slots=True)
class AgentResult:
    """The end of an agent run. ``text`` is the final answer when ``outcome`` is ``ANSWERED``."""

    outcome: AgentOutcome
    text: str
    messages: tuple[Message, ...]
    turns: tuple[Turn, ...]
    resumed_turns: int = 0  # turns taken from a journal instead of being run again
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def answered(self) -> bool:
        return self.outcome is AgentOutcome.ANSWERED

    @property
    def usage(self) -> Usage:
        return Usage(
            input_tokens=sum(t.input_tokens for t in self.turns),
            output_tokens=sum(t.output_tokens for t in self.turns),
        )

    @property
    def cost(self) -> float:
        """USD of the calls whose price is known (see ``unpriced_calls``)."""
        return sum(t.cost for t in self.turns)

    @property
    def unpriced_calls(self) -> int:
        return sum(t.unpriced_calls for t in self.turns)

    @property
    def tool_calls(self) -> tuple[ToolCallRecord, ...]:
        return tuple(c for t in self.turns for c in t.tool_calls)

    def raise_for_outcome(self) -> AgentResult:
        """Return self when the agent answered, else raise :class:`AgentLimitReached`."""
        if self.answered:
            return self
        raise AgentLimitReached(
            f"the agent stopped without an answer: {_LIMIT_TEXT[self.outcome]} after {len(self.turns)} turn(s)",
            outcome=str(self.outcome),
            result=self,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: what an ``agent:`` step returns."""
        usage = self.usage
        return {
            "text": self.text,
            "outcome": str(self.outcome),
            "turns": len(self.turns),
            "tool_calls": [c.to_dict() for c in self.tool_calls],
            "usage": {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens},
            "cost": self.cost,
            "unpriced_calls": self.unpriced_calls,
            "per_turn": [t.to_dict() for t in self.turns],
        }


_LIMIT_TEXT = {
    AgentOutcome.MAX_TURNS: "max_turns reached",
    AgentOutcome.TOKEN_BUDGET: "max_total_tokens spent",
    AgentOutcome.COST_BUDGET: "max_cost spent",
    AgentOutcome.DEADLINE: "deadline passed",
}
