"""``${...}`` references in spec values.

A value that is exactly one ``${expr}`` passes the object the expression yields
(a list stays a list); a string with text around references renders as a string;
mappings and lists are walked recursively; anything else is a literal. ``$${``
writes a literal ``${``.

The scanner is hand-written because the placeholder grammar is tiny (find the
matching ``}`` while skipping quoted strings and nested braces) and must report
the offset of an unclosed ``${``; the expressions inside are parsed by
:mod:`legato.expressions._expr`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from legato.expressions._expr import Expression, ExpressionError, compile_expression

__all__ = ["Placeholder", "Value", "compile_value", "split_template"]


@dataclass(frozen=True, slots=True)
class Placeholder:
    source: str
    offset: int  # 0-based offset of the "${" in the template

    def __str__(self) -> str:
        return self.source


def split_template(text: str) -> list[str | Placeholder]:
    """Split ``text`` into literal strings and placeholders; raise ExpressionError
    on an unclosed ``${``."""
    parts: list[str | Placeholder] = []
    buf: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text.startswith("$${", i):
            buf.append("${")
            i += 3
            continue
        if text.startswith("${", i):
            end = _matching_brace(text, i + 2)
            if end < 0:
                raise ExpressionError("unclosed '${'", expression=text, column=i + 1)
            if buf:
                parts.append("".join(buf))
                buf = []
            parts.append(Placeholder(text[i + 2 : end].strip(), i))
            i = end + 1
            continue
        buf.append(text[i])
        i += 1
    if buf:
        parts.append("".join(buf))
    return parts


def _matching_brace(text: str, start: int) -> int:
    depth = 0
    quote: str | None = None
    i = start
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch in "{[(":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "}":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    return -1


class Value:
    """A compiled spec value. ``steps`` are the steps it reads, ``names`` the root
    names (``inputs``, ``steps``, ``loop``, ...) its expressions use."""

    steps: frozenset[str] = frozenset()
    names: frozenset[str] = frozenset()

    def render(self, scope: Mapping[str, Any]) -> Any:
        raise NotImplementedError

    @property
    def expressions(self) -> tuple[Expression, ...]:
        return ()


class _Literal(Value):
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def render(self, scope: Mapping[str, Any]) -> Any:
        return self.value


class _Ref(Value):
    __slots__ = ("expr", "names", "steps")

    def __init__(self, expr: Expression) -> None:
        self.expr = expr
        self.steps = expr.steps
        self.names = expr.names

    def render(self, scope: Mapping[str, Any]) -> Any:
        return self.expr.evaluate(scope)

    @property
    def expressions(self) -> tuple[Expression, ...]:
        return (self.expr,)


class _Template(Value):
    __slots__ = ("names", "parts", "steps")

    def __init__(self, parts: list[str | Expression]) -> None:
        self.parts = parts
        exprs = [p for p in parts if isinstance(p, Expression)]
        self.steps = frozenset().union(*(e.steps for e in exprs))
        self.names = frozenset().union(*(e.names for e in exprs))

    def render(self, scope: Mapping[str, Any]) -> Any:
        return "".join(p if isinstance(p, str) else _to_text(p.evaluate(scope)) for p in self.parts)

    @property
    def expressions(self) -> tuple[Expression, ...]:
        return tuple(p for p in self.parts if isinstance(p, Expression))


class _Container(Value):
    __slots__ = ("items", "kind", "names", "steps")

    def __init__(self, items: dict[Any, Value] | list[Value], kind: type) -> None:
        self.items = items
        self.kind = kind
        values = list(items.values()) if isinstance(items, dict) else items
        self.steps = frozenset().union(*(v.steps for v in values))
        self.names = frozenset().union(*(v.names for v in values))

    def render(self, scope: Mapping[str, Any]) -> Any:
        if isinstance(self.items, dict):
            return {k: v.render(scope) for k, v in self.items.items()}
        return [v.render(scope) for v in self.items]

    @property
    def expressions(self) -> tuple[Expression, ...]:
        values = list(self.items.values()) if isinstance(self.items, dict) else self.items
        return tuple(e for v in values for e in v.expressions)


def _to_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def compile_value(value: Any) -> Value:
    """Compile a spec value (scalars, strings with ``${...}``, nested lists and mappings)."""
    if isinstance(value, str):
        if "${" not in value:
            return _Literal(value.replace("$${", "${"))
        parts = split_template(value)
        if len(parts) == 1 and isinstance(parts[0], Placeholder):
            return _Ref(compile_expression(parts[0].source))
        compiled: list[str | Expression] = [p if isinstance(p, str) else compile_expression(p.source) for p in parts]
        return _Template(compiled)
    if isinstance(value, Mapping):
        items = {k: compile_value(v) for k, v in value.items()}
        if all(isinstance(v, _Literal) for v in items.values()):
            return _Literal(dict(value))
        return _Container(items, dict)
    if isinstance(value, list | tuple):
        seq = [compile_value(v) for v in value]
        if all(isinstance(v, _Literal) for v in seq):
            return _Literal(list(value))
        return _Container(seq, list)
    return _Literal(value)
