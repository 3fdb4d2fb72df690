"""Tools an agent may call, and how a Python function becomes one.

A tool is an :class:`AgentTool`: the :class:`~legato.providers.Tool` the model sees
(name, description, JSON schema of the arguments) and ``invoke(arguments)``, which
returns any JSON-able value. Failures are typed: :class:`InvalidToolArguments` when
the arguments do not fit the schema, anything else is the tool's own failure.

:func:`function_tool` turns a plain function (sync or async) into a tool. The schema
and the validation both come from pydantic (a ``TypeAdapter`` over the function's
signature, so ``Annotated[int, Field(ge=1, description=...)]``, enums, literals,
dataclasses and pydantic models work as they do everywhere else in pydantic); the
descriptions come from the docstring (Google, NumPy, reST or Epydoc style, parsed by
``docstring_parser``). Arguments are validated *before* the function is called, so a
``ValidationError`` raised inside the function is the tool's failure, not the model's.
"""

from __future__ import annotations

import abc
import functools
import inspect
import re
import typing
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from pydantic import TypeAdapter, ValidationError

from legato.errors import InvalidToolArguments
from legato.providers import Tool

if TYPE_CHECKING:
    from legato.engine import Pipeline

__all__ = ["AgentTool", "FunctionTool", "PipelineTool", "function_tool", "to_tools"]

_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


class AgentTool(abc.ABC):
    """A function the model may call: ``spec`` describes it, ``invoke`` runs it."""

    spec: Tool

    @property
    def name(self) -> str:
        return self.spec.name

    @abc.abstractmethod
    async def invoke(self, arguments: dict[str, Any]) -> Any:
        """Run the tool with the model's (decoded) arguments.

        Raises :class:`InvalidToolArguments` when they do not fit the schema; any
        other exception is the tool's own failure.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class FunctionTool(AgentTool):
    """A Python function as a tool (see :func:`function_tool`).

    ``fixed`` gives some parameters their values: the model neither sees nor sets
    them. Calling the tool object calls the function itself.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        fixed: Mapping[str, Any] | None = None,
    ) -> None:
        self.fn = fn
        self.fixed = dict(fixed or {})
        tool_name = str(name or getattr(fn, "__name__", ""))
        if not _NAME.match(tool_name):
            raise ValueError(f"tool name {tool_name!r} must be 1-64 letters, digits, '_' or '-'")
        self._arguments = _arguments_adapter(fn, frozenset(self.fixed))
        self._is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)  # noqa: B004 - an async callable object
        )
        parameters, summary = _schema(fn, self._arguments)
        self.spec = Tool(name=tool_name, description=description or summary, parameters=parameters)

    async def invoke(self, arguments: dict[str, Any]) -> Any:
        try:
            kwargs = self._arguments.validate_python(arguments)
        except ValidationError as exc:
            raise InvalidToolArguments(_describe(exc), tool=self.name) from None
        kwargs.update(self.fixed)
        if self._is_async:
            return await self.fn(**kwargs)
        # Abandoned on cancel, as the engine does for sync steps: a deadline is kept even
        # when the function never returns (the thread finishes on its own).
        return await anyio.to_thread.run_sync(functools.partial(self.fn, **kwargs), abandon_on_cancel=True)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


class PipelineTool(AgentTool):
    """A pipeline as a tool: its declared inputs are the arguments, its result the answer.

    The pipeline runs as a nested run whose model calls count in the calling turn's
    ledger; a run that does not succeed is the tool's failure.
    """

    def __init__(self, pipeline: Pipeline, *, name: str | None = None, description: str | None = None) -> None:
        self.pipeline = pipeline
        tool_name = name or re.sub(r"[^a-zA-Z0-9_-]", "_", pipeline.name)[:64]
        properties: dict[str, Any] = {}
        required = []
        for decl in pipeline.inputs.values():
            prop = dict(_INPUT_SCHEMA.get(decl.type_name, {}))
            if decl.description:
                prop["description"] = decl.description
            if decl.required:
                required.append(decl.name)
            elif decl.default is not None:
                prop["default"] = decl.default
            properties[decl.name] = prop
        parameters: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
        if required:
            parameters["required"] = required
        summary = description or pipeline.description or f"Run the {pipeline.name!r} pipeline."
        self.spec = Tool(name=tool_name, description=summary, parameters=parameters)

    async def invoke(self, arguments: dict[str, Any]) -> Any:
        from legato.errors import InputError
        from legato.ledger import current_ledger

        try:
            result = await self.pipeline.run(arguments, ledger=current_ledger())
        except InputError as exc:
            raise InvalidToolArguments(str(exc), tool=self.name) from None
        result.raise_for_status()
        return result.result


_INPUT_SCHEMA: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "integer": {"type": "integer"},
    "number": {"type": "number"},
    "boolean": {"type": "boolean"},
    "list": {"type": "array"},
    "array": {"type": "array"},
    "object": {"type": "object"},
    "mapping": {"type": "object"},
}


def function_tool(
    fn: Callable[..., Any] | None = None, *, name: str | None = None, description: str | None = None
) -> Any:
    """Make a tool of ``fn``; usable bare (``@function_tool``) or with options.

    ::

        @function_tool
        async def lookup_order(order_id: str) -> dict:
            '''Find an order by its id.

            Args:
                order_id: The order id, like "A-1001".
            '''
    """
    if fn is None:
        return functools.partial(function_tool, name=name, description=description)
    return FunctionTool(fn, name=name, description=description)


def to_tools(tools: typing.Iterable[AgentTool | Callable[..., Any]]) -> dict[str, AgentTool]:
    """Tools by name; plain callables become :class:`FunctionTool`. Names must be unique."""
    found: dict[str, AgentTool] = {}
    for item in tools:
        tool = item if isinstance(item, AgentTool) else FunctionTool(item)
        if tool.name in found:
            raise ValueError(f"two tools are named {tool.name!r}; give one another name")
        found[tool.name] = tool
    return found


def _arguments_adapter(fn: Callable[..., Any], fixed: frozenset[str] = frozenset()) -> TypeAdapter[dict[str, Any]]:
    """A pydantic adapter that validates keyword arguments for ``fn`` without calling it.

    It validates a stand-in with ``fn``'s signature (annotations resolved, so
    ``from __future__ import annotations`` in the tool's module is fine) that
    returns the validated arguments.
    """
    signature = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except (NameError, TypeError) as exc:
        raise ValueError(f"tool {getattr(fn, '__name__', fn)!r}: cannot resolve its type hints ({exc})") from exc
    params = []
    for p in signature.parameters.values():
        if p.name in fixed:
            continue
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY):
            raise ValueError(
                f"tool {getattr(fn, '__name__', fn)!r}: parameter {p.name!r} must be a named parameter "
                "(no *args, **kwargs or positional-only parameters)"
            )
        params.append(p.replace(annotation=hints.get(p.name, Any)))

    def arguments(**kwargs: Any) -> dict[str, Any]:
        return kwargs

    arguments.__signature__ = signature.replace(parameters=params, return_annotation=dict)  # type: ignore[attr-defined]
    arguments.__annotations__ = {p.name: p.annotation for p in params}
    adapter: TypeAdapter[dict[str, Any]] = TypeAdapter(arguments)  # type: ignore[arg-type]
    return adapter


def _schema(fn: Callable[..., Any], adapter: TypeAdapter[Any]) -> tuple[dict[str, Any], str | None]:
    import docstring_parser

    doc = docstring_parser.parse(inspect.getdoc(fn) or "")
    schema = adapter.json_schema()
    schema.pop("title", None)
    properties = schema.get("properties") or {}
    for param in doc.params:
        prop = properties.get(param.arg_name)
        if isinstance(prop, dict) and param.description and "description" not in prop:
            prop["description"] = param.description
    for prop in properties.values():
        if isinstance(prop, dict):
            prop.pop("title", None)
    summary = "\n\n".join(p for p in (doc.short_description, doc.long_description) if p) or None
    return schema, summary


def _describe(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "arguments"
        problems.append(f"{where}: {err['msg']}")
    return "; ".join(problems)


def describe_tools(tools: Mapping[str, AgentTool]) -> str:
    """One line naming the tools (for plan descriptions and errors)."""
    return ", ".join(sorted(tools)) or "no tools"
