"""The agent loop: a model calls tools until it answers, within limits.

Each turn sends the conversation and the tool schemas to the model; when the answer
asks for tools, they run (concurrently when the model asked for several at once) and
their results go back as ``tool`` messages; an answer without tool calls ends the
run. Every way it can stop is an :class:`AgentOutcome`: the answer, ``max_turns``
model calls, ``max_total_tokens`` tokens, ``max_cost`` USD, or the ``deadline``.

A tool that fails -- an unknown name, arguments that are not JSON or do not fit the
schema, an exception -- sends the error back to the model as that call's result, so
the model can correct itself (``on_tool_error="return"``, the default); with
``"raise"`` the calls of that turn finish, are recorded, and the first failure is
raised as a :class:`~legato.errors.ToolError`.

The loop is written here rather than taken from an agent framework because its
contracts are legato's own: any :class:`~legato.providers.Model` (routers, caches
and fallbacks included), legato's ledger for tokens and cost, the run store's
journal for durable turns, structured concurrency with anyio.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, Literal

import anyio
from pydantic_core import to_json

from legato.agents._journal import AgentJournal
from legato.agents._result import AgentOutcome, AgentResult, ToolCallRecord, ToolErrorKind, Turn
from legato.agents._spans import AgentSpans, agent_spans
from legato.agents._tools import AgentTool, to_tools
from legato.errors import InvalidToolArguments, ToolError, ToolFailed, UnknownTool
from legato.ledger import CallRecord, Ledger, current_ledger, use_ledger
from legato.providers import ChatRequest, ChatResponse, Message, Model, ToolCall
from legato.providers._assemble import StreamAssembler

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

__all__ = ["Agent"]

OnToolError = Literal["return", "raise"]


class Agent:
    """A model that calls tools in a loop until it answers.

    Args:
        model: any :class:`~legato.providers.Model` (an adapter, a router, a wrapper).
        tools: :class:`AgentTool` objects or plain functions (made into tools with
            :func:`legato.agents.function_tool`).
        system: the system prompt.
        name: names the agent in spans and ledgers.
        max_turns: most model calls in one run.
        max_total_tokens: stop once the run has used this many tokens (input + output).
        max_cost: stop once the run has spent this many USD.
        deadline: stop after this many seconds.
        on_tool_error: ``"return"`` sends a failed call's error to the model as its
            result; ``"raise"`` raises it as a :class:`~legato.errors.ToolError`.
        max_tool_concurrency: most tool calls of one turn running at once (all by default).
        temperature, max_tokens, tool_choice, metadata: passed on each model call.
        tracer_provider: where the agent's spans go (default: the global provider).
    """

    def __init__(
        self,
        model: Model,
        *,
        tools: Iterable[AgentTool | Callable[..., Any]] = (),
        system: str | None = None,
        name: str = "agent",
        max_turns: int = 10,
        max_total_tokens: int | None = None,
        max_cost: float | None = None,
        deadline: float | None = None,
        on_tool_error: OnToolError = "return",
        max_tool_concurrency: int | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        tool_choice: str | None = None,
        metadata: dict[str, Any] | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        if max_turns < 1:
            raise ValueError("max_turns must be at least 1")
        for label, value in (("max_total_tokens", max_total_tokens), ("max_tool_concurrency", max_tool_concurrency)):
            if value is not None and value < 1:
                raise ValueError(f"{label} must be at least 1")
        for label, limit in (("max_cost", max_cost), ("deadline", deadline)):
            if limit is not None and limit <= 0:
                raise ValueError(f"{label} must be positive")
        if on_tool_error not in ("return", "raise"):
            raise ValueError(f"on_tool_error must be 'return' or 'raise', got {on_tool_error!r}")
        self.model = model
        self.tools = to_tools(tools)
        self.system = system
        self.name = name
        self.max_turns = max_turns
        self.max_total_tokens = max_total_tokens
        self.max_cost = max_cost
        self.deadline = deadline
        self.on_tool_error: OnToolError = on_tool_error
        self.max_tool_concurrency = max_tool_concurrency
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.tool_choice = tool_choice
        self.metadata = dict(metadata or {})
        self.tracer_provider = tracer_provider

    async def run(
        self,
        prompt: str | Sequence[Message],
        *,
        journal: AgentJournal | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> AgentResult:
        """Run until the model answers or a limit is reached.

        ``prompt`` is the user's message (or a whole conversation). With a
        ``journal``, each turn and tool call is recorded as it completes, and the
        turns and calls an earlier run recorded there are reused, not made again.
        With ``on_text``, each model turn is streamed and every piece of its text is
        passed to ``on_text`` as it arrives (turns replayed from the journal are not);
        without it, turns are plain (non-streaming) calls.
        Model errors propagate (wrap the model in retries or a router for those).
        """
        return await _Session(self, _conversation(prompt, self.system), journal, on_text).run()

    def request(self, messages: Sequence[Message]) -> ChatRequest:
        """The model request of the next turn."""
        return ChatRequest(
            messages=list(messages),
            tools=[t.spec for t in self.tools.values()] or None,
            tool_choice=self.tool_choice if self.tools else None,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            metadata=self.metadata,
        )

    def __repr__(self) -> str:
        return f"Agent({self.name!r}, model={self.model.name!r}, tools={sorted(self.tools)})"


def _conversation(prompt: str | Sequence[Message], system: str | None) -> list[Message]:
    messages = [Message(role="user", content=prompt)] if isinstance(prompt, str) else list(prompt)
    if not messages:
        raise ValueError("an agent needs a prompt")
    if system is not None and messages[0].role != "system":
        messages.insert(0, Message(role="system", content=system))
    return messages


class _Session:
    """The state of one :meth:`Agent.run`."""

    def __init__(
        self,
        agent: Agent,
        messages: list[Message],
        journal: AgentJournal | None,
        on_text: Callable[[str], None] | None,
    ) -> None:
        self.agent = agent
        self.messages = messages
        self.journal = journal
        self.on_text = on_text
        self.turns: list[Turn] = []
        self.resumed = 0
        self.recorded: dict[str, ToolCallRecord] = {}  # tool calls of the pending turn already recorded
        self.errors: dict[str, BaseException] = {}
        self.parent = current_ledger()
        self.spans: AgentSpans = agent_spans(agent.name, agent.tracer_provider)

    async def run(self) -> AgentResult:
        pending = await self.replay()
        outcome: AgentOutcome | None = None
        with self.spans.run() as span:
            scope = anyio.move_on_after(self.agent.deadline) if self.agent.deadline is not None else nullcontext()
            with scope:
                outcome = await self.loop(pending)
            if outcome is None:
                outcome = AgentOutcome.DEADLINE
            if span is not None:
                span.set_attributes({"legato.agent.outcome": str(outcome), "legato.agent.turns": len(self.turns)})
        last = self.turns[-1].message if self.turns else None
        text = last.text if outcome is AgentOutcome.ANSWERED and last is not None else ""
        return AgentResult(outcome, text, tuple(self.messages), tuple(self.turns), self.resumed)

    async def loop(self, pending: Turn | None) -> AgentOutcome:
        if pending is not None:  # a recorded turn whose tool calls did not all finish
            with self.spans.turn(pending.index):
                await self.run_tools(pending)
        elif self.turns and not self.turns[-1].requested:
            return AgentOutcome.ANSWERED
        while True:
            stop = self.limit_reached()
            if stop is not None:
                return stop
            index = len(self.turns) + 1
            with self.spans.turn(index) as span:
                turn = await self.model_turn(index, span)
                if not turn.requested:
                    return AgentOutcome.ANSWERED
                await self.run_tools(turn)

    def limit_reached(self) -> AgentOutcome | None:
        agent = self.agent
        if len(self.turns) >= agent.max_turns:
            return AgentOutcome.MAX_TURNS
        tokens = sum(t.input_tokens + t.output_tokens for t in self.turns)
        if agent.max_total_tokens is not None and tokens >= agent.max_total_tokens:
            return AgentOutcome.TOKEN_BUDGET
        if agent.max_cost is not None and sum(t.cost for t in self.turns) >= agent.max_cost:
            return AgentOutcome.COST_BUDGET
        return None

    def ledger(self, index: int) -> Ledger:
        name = f"{self.agent.name} turn {index}"
        return self.parent.child(name) if self.parent is not None else Ledger(name=name)

    def charge(self, turn: Turn) -> None:
        """Record a replayed turn's spend on the ledger (one call, as the model made it)."""
        if self.parent is None:
            return
        cost = None if turn.unpriced_calls and not turn.cost else turn.cost
        self.ledger(turn.index).record(
            CallRecord(turn.model, turn.provider, turn.input_tokens, turn.output_tokens, 0, cost)
        )

    # -- a model turn ------------------------------------------------------------------

    async def model_turn(self, index: int, span: Any) -> Turn:
        ledger = self.ledger(index)
        started = time.perf_counter()
        with use_ledger(ledger):
            response = await self.call_model(self.agent.request(self.messages))
        latency = time.perf_counter() - started
        message = _unique_ids(response.message, index)
        if not ledger.calls:  # a model that does not record its calls: count this one here
            usage = response.usage
            ledger.record(
                CallRecord(
                    response.model,
                    response.provider,
                    usage.input_tokens,
                    usage.output_tokens,
                    usage.cached_input_tokens,
                    response.cost,
                    response.cached,
                )
            )
        turn = Turn(
            index=index,
            message=message,
            model=response.model,
            provider=response.provider,
            finish_reason=response.finish_reason,
            input_tokens=ledger.input_tokens,
            output_tokens=ledger.output_tokens,
            cost=ledger.cost,
            unpriced_calls=ledger.unpriced_calls,
            latency_s=latency,
        )
        if span is not None:
            span.set_attributes(
                {
                    "gen_ai.usage.input_tokens": turn.input_tokens,
                    "gen_ai.usage.output_tokens": turn.output_tokens,
                    "legato.cost.usd": turn.cost,
                    "legato.agent.tool_calls": len(turn.requested),
                }
            )
        if self.journal is not None:
            await self.journal.append({"kind": "turn", **_turn_entry(turn)})
        self.turns.append(turn)
        self.messages.append(message)
        return turn

    async def call_model(self, request: ChatRequest) -> ChatResponse:
        """One model call; streamed when someone takes the text as it arrives. The
        response assembled from the chunks (text and tool calls) equals ``chat``'s."""
        model, on_text = self.agent.model, self.on_text
        if on_text is None:
            return await model.chat(request)
        assembler = StreamAssembler()
        async for chunk in model.stream(request):
            assembler.add(chunk)
            if chunk.text:
                on_text(chunk.text)
        return assembler.response(model=model.name, provider=getattr(model, "provider", ""))

    # -- tool calls --------------------------------------------------------------------

    async def run_tools(self, turn: Turn) -> None:
        records = dict(self.recorded)
        self.recorded = {}
        todo = [c for c in turn.requested if c.id not in records]
        ledger = self.ledger(turn.index) if todo else None
        limiter = anyio.CapacityLimiter(self.agent.max_tool_concurrency) if self.agent.max_tool_concurrency else None
        with use_ledger(ledger) if ledger is not None else nullcontext():
            if len(todo) == 1:  # the common case: no task group to set up
                await self.tool_call(turn.index, todo[0], records, None)
            elif todo:
                async with anyio.create_task_group() as tg:
                    for call in todo:
                        tg.start_soon(self.tool_call, turn.index, call, records, limiter, name=f"tool {call.name}")
        ordered = tuple(records[c.id] for c in turn.requested)
        if ledger is not None and ledger.calls:  # the tools' own model calls count towards the turn
            turn = dataclasses.replace(
                turn,
                input_tokens=turn.input_tokens + ledger.input_tokens,
                output_tokens=turn.output_tokens + ledger.output_tokens,
                cost=turn.cost + ledger.cost,
                unpriced_calls=turn.unpriced_calls + ledger.unpriced_calls,
            )
        self.turns[-1] = dataclasses.replace(turn, tool_calls=ordered)
        self.messages.extend(r.message() for r in ordered)
        if self.agent.on_tool_error == "raise":
            failed = next((r for r in ordered if r.error is not None), None)
            if failed is not None:
                raise _tool_error(failed) from self.errors.get(failed.id)

    async def tool_call(
        self,
        turn: int,
        call: ToolCall,
        records: dict[str, ToolCallRecord],
        limiter: anyio.CapacityLimiter | None,
    ) -> None:
        started = time.perf_counter()
        error: ToolErrorKind | None = None
        error_type: str | None = None
        with self.spans.tool(call.name, call.id) as span:
            try:
                async with limiter if limiter is not None else nullcontext():
                    content = _content(await self.invoke(call))
            except UnknownTool as exc:
                error, content = ToolErrorKind.UNKNOWN_TOOL, f"Error: {exc}"
            except InvalidToolArguments as exc:
                error, content = ToolErrorKind.INVALID_ARGUMENTS, f"Error: invalid arguments for {call.name!r}: {exc}"
            except Exception as exc:
                self.errors[call.id] = exc
                error, error_type = ToolErrorKind.RAISED, type(exc).__name__
                content = f"Error: the tool {call.name!r} failed: {type(exc).__name__}: {exc}"
            if span is not None and error is not None:
                span.set_attribute("error.type", error_type or str(error))
        record = ToolCallRecord(
            call.id, call.name, call.arguments, content, error, error_type, time.perf_counter() - started
        )
        if self.journal is not None:
            await self.journal.append({"kind": "tool", "turn": turn, "call": record.to_dict()})
        records[call.id] = record

    async def invoke(self, call: ToolCall) -> Any:
        tool = self.agent.tools.get(call.name)
        if tool is None:
            known = ", ".join(sorted(self.agent.tools)) or "none"
            raise UnknownTool(f"there is no tool named {call.name!r} (the tools are: {known})", tool=call.name)
        try:
            arguments = json.loads(call.arguments or "{}")
        except RecursionError:
            raise InvalidToolArguments("the arguments are nested too deeply", tool=call.name) from None
        except ValueError as exc:
            raise InvalidToolArguments(f"the arguments are not valid JSON ({exc})", tool=call.name) from None
        if not isinstance(arguments, dict):
            kind = type(arguments).__name__
            raise InvalidToolArguments(f"the arguments must be a JSON object, got {kind}", tool=call.name)
        return await tool.invoke(arguments)

    # -- resuming from a journal -------------------------------------------------------

    async def replay(self) -> Turn | None:
        """Take the turns and calls recorded by an earlier run; return the last turn if
        some of its tool calls have no recorded result."""
        if self.journal is None:
            return None
        turns: list[Turn] = []
        calls: dict[int, dict[str, ToolCallRecord]] = {}
        inherited = int(getattr(self.journal, "inherited", 0) or 0)
        for position, entry in enumerate(await self.journal.load()):
            if entry.get("kind") == "turn":
                turns.append(_turn_from(entry))
                if position < inherited:  # paid for by a process that died: count it in this run
                    self.charge(turns[-1])
            elif entry.get("kind") == "tool":
                record = ToolCallRecord.from_dict(entry["call"])
                if record.error is not None and self.agent.on_tool_error == "raise":
                    continue  # that failure ended the earlier attempt: this one calls the tool again
                calls.setdefault(int(entry["turn"]), {})[record.id] = record
        self.resumed = len(turns)
        for turn in turns:
            self.messages.append(turn.message)
            done = calls.get(turn.index, {})
            if any(c.id not in done for c in turn.requested):
                self.turns.append(turn)
                self.recorded = done
                return turn
            ordered = tuple(done[c.id] for c in turn.requested)
            self.turns.append(dataclasses.replace(turn, tool_calls=ordered))
            self.messages.extend(r.message() for r in ordered)
        return None


def _unique_ids(message: Message, turn: int) -> Message:
    """The message with every tool call id present and unique within the turn.

    Some OpenAI-compatible servers send empty or repeated ids; the results must be
    matched to their calls, so such ids are replaced (in the history too)."""
    calls = message.tool_calls or []
    seen: set[str] = set()
    fixed = []
    for position, call in enumerate(calls):
        if not call.id or call.id in seen:
            call = call.model_copy(update={"id": f"call_{turn}_{position}"})
        seen.add(call.id)
        fixed.append(call)
    if all(a is b for a, b in zip(fixed, calls, strict=True)):
        return message
    return message.model_copy(update={"tool_calls": fixed})


def _content(value: Any) -> str:
    text = value if isinstance(value, str) else to_json(value, fallback=str).decode()
    # A lone surrogate (from a tool that decoded bytes with surrogateescape, say) cannot
    # be sent to any provider: it becomes '?' rather than failing the next turn.
    return text.encode("utf-8", "replace").decode("utf-8") if not text.isascii() else text


def _tool_error(record: ToolCallRecord) -> ToolError:
    kind: type[ToolError] = {
        ToolErrorKind.UNKNOWN_TOOL: UnknownTool,
        ToolErrorKind.INVALID_ARGUMENTS: InvalidToolArguments,
    }.get(record.error, ToolFailed)  # type: ignore[arg-type]
    return kind(record.content.removeprefix("Error: "), tool=record.name, call_id=record.id)


def _turn_entry(turn: Turn) -> dict[str, Any]:
    entry = {f.name: getattr(turn, f.name) for f in dataclasses.fields(turn) if f.name not in ("message", "tool_calls")}
    entry["message"] = turn.message.model_dump(mode="json", exclude_none=True)
    return entry


def _turn_from(entry: dict[str, Any]) -> Turn:
    fields = {f.name for f in dataclasses.fields(Turn)} - {"message", "tool_calls"}
    values = {k: v for k, v in entry.items() if k in fields}
    return Turn(message=Message.model_validate(entry["message"]), **values)
