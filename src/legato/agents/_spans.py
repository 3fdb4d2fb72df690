"""OpenTelemetry spans of an agent run (GenAI semantic conventions).

::

    invoke_agent <name>          gen_ai.agent.name, legato.agent.outcome, legato.agent.turns
    ├── agent_turn <n>           legato.agent.turn, gen_ai.usage.*, legato.cost.usd
    │   ├── chat <model>         (from :class:`legato.observe.Instrumented`, when the model is instrumented)
    │   ├── execute_tool <name>  gen_ai.tool.name, gen_ai.tool.call.id, error.type
    │   └── execute_tool <name>
    └── agent_turn <n+1> ...

The agent span is a child of the running step's span. With no SDK tracer provider
installed, :func:`agent_spans` returns a recorder whose hooks do nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer, TracerProvider

__all__ = ["AgentSpans", "agent_spans"]


class AgentSpans:
    """Opens the spans of one agent run; every method is a no-op when tracing is off."""

    def __init__(self, tracer: Tracer | None, agent: str) -> None:
        self.tracer = tracer
        self.agent = agent

    @contextmanager
    def run(self) -> Iterator[Span | None]:
        if self.tracer is None:
            yield None
            return
        from legato.observe._tracing import step_parent_context

        attributes = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": self.agent}
        with self.tracer.start_as_current_span(
            f"invoke_agent {self.agent}", context=step_parent_context(), attributes=attributes
        ) as span:
            yield span

    def turn(self, index: int) -> Any:
        if self.tracer is None:
            return nullcontext(None)
        return self.tracer.start_as_current_span(f"agent_turn {index}", attributes={"legato.agent.turn": index})

    def tool(self, name: str, call_id: str) -> Any:
        if self.tracer is None:
            return nullcontext(None)
        attributes = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name, "gen_ai.tool.call.id": call_id}
        return self.tracer.start_as_current_span(f"execute_tool {name}", attributes=attributes)


def agent_spans(agent: str, provider: TracerProvider | None = None) -> AgentSpans:
    """Spans through ``provider`` (default: the global tracer provider)."""
    from legato.observe._tracing import get_tracer, tracing_enabled

    return AgentSpans(get_tracer(provider) if tracing_enabled(provider) else None, agent)
