"""The safe expression language of ``when:``, ``until:`` and ``${...}`` references.

Expressions are Python-syntax expressions evaluated by simpleeval (a well-kept
library that walks the AST and never calls ``eval``) with a restricted evaluator:

* comparisons, boolean logic, arithmetic, ``in``, conditional expressions, list /
  dict / tuple literals and (bounded) comprehensions;
* field and index access: ``steps.classify.label``, ``steps.entities[0]``,
  ``inputs.options['lang']``. Field access on a mapping reads the key; on an object it
  reads a public, non-callable attribute. Names starting with ``_`` are refused;
* a short list of functions (:data:`FUNCTIONS`) and a few read-only string methods
  (:data:`STRING_METHODS`);
* no imports, no lambdas, no assignment, no dunder access, no arbitrary calls;
* bounded work and memory: simpleeval refuses a single huge operation, and this
  evaluator also counts the nodes one evaluation visits (:data:`MAX_WORK`) and the
  elements of every list, string or mapping it builds (:data:`MAX_ELEMENTS`), so a
  comprehension of large lists stops early with the column of the part that went over.

Parsing happens once, when a pipeline is compiled (:func:`compile_expression`), and
reports the column of a syntax error; evaluation raises :class:`ExpressionError`
(never a simpleeval or Python internal exception) so a bad condition fails its step
with a clear message.
"""

from __future__ import annotations

import ast
import difflib
import threading
from collections.abc import Iterable, Mapping, Sized
from dataclasses import dataclass
from typing import Any

import simpleeval

from legato.errors import ExpressionError

__all__ = [
    "FUNCTIONS",
    "STRING_METHODS",
    "Expression",
    "ExpressionError",
    "closest",
    "compile_expression",
]

MAX_EXPRESSION_LENGTH = 10_000
MAX_WORK = 200_000
"""Nodes one evaluation may visit (comprehension iterations included)."""
MAX_ELEMENTS = 1_000_000
"""Elements (list items, characters, keys) the values one evaluation builds may hold in total."""

FUNCTIONS: dict[str, Any] = {
    "len": len,
    "min": min,
    "max": max,
    "abs": abs,
    "round": round,
    "sum": sum,
    "any": any,
    "all": all,
    "sorted": sorted,
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
}

STRING_METHODS = frozenset(
    {"lower", "upper", "strip", "lstrip", "rstrip", "startswith", "endswith", "split", "replace", "title", "count"}
)

_CONSTANTS = {"true": True, "false": False, "null": None, "none": None, "True": True, "False": False, "None": None}


class _Evaluator(simpleeval.EvalWithCompoundTypes):  # type: ignore[misc]
    """simpleeval with attribute access narrowed to data, and no name fallbacks."""

    def __init__(self) -> None:
        super().__init__(functions=dict(FUNCTIONS), names={})
        self.work = 0
        self.elements = 0

    def eval(self, expr: str, previously_parsed: ast.AST | None = None) -> Any:
        self.work = 0
        self.elements = 0
        return super().eval(expr, previously_parsed)

    def _eval(self, node: ast.AST) -> Any:
        self.work += 1
        if self.work > MAX_WORK:
            raise _over(f"expression does too much work (more than {MAX_WORK:,} steps)", node)
        handler = self.nodes.get(type(node))
        if handler is None:
            return super()._eval(node)  # simpleeval's "not available" error
        result = handler(node)
        self._check_disallowed_items(result)
        if type(node) in _BUILDERS and isinstance(result, Sized):
            self.elements += len(result)
            if self.elements > MAX_ELEMENTS:
                raise _over(f"expression builds too much data (more than {MAX_ELEMENTS:,} elements in total)", node)
        return result

    def _eval_attribute(self, node: ast.Attribute) -> Any:
        attr = node.attr
        if attr.startswith("_"):
            raise ExpressionError(f"access to private name {attr!r} is not allowed")
        base = self._eval(node.value)
        if isinstance(base, Mapping):
            if attr in base:
                return base[attr]
            raise ExpressionError(f"no field {attr!r}{_suggest(attr, base.keys())}")
        if isinstance(base, str):
            if attr in STRING_METHODS:
                return getattr(base, attr)
            raise ExpressionError(f"string method {attr!r} is not available")
        try:
            value = getattr(base, attr)
        except AttributeError:
            raise ExpressionError(f"{type(base).__name__} value has no field {attr!r}") from None
        if callable(value):
            raise ExpressionError(f"calling methods ({attr!r}) is not allowed")
        return value

    def _eval_subscript(self, node: ast.Subscript) -> Any:
        container = self._eval(node.value)
        key = self._eval(node.slice)
        if isinstance(key, str) and key.startswith("_") and not isinstance(container, Mapping):
            raise ExpressionError(f"access to private name {key!r} is not allowed")
        try:
            return container[key]
        except KeyError:
            raise ExpressionError(f"no key {key!r}") from None
        except IndexError:
            raise ExpressionError(f"index {key!r} out of range") from None
        except TypeError as exc:
            raise ExpressionError(f"cannot index {type(container).__name__}: {exc}") from None


_BUILDERS = frozenset({ast.BinOp, ast.List, ast.Tuple, ast.Dict, ast.Set, ast.ListComp, ast.GeneratorExp, ast.DictComp})


def _over(message: str, node: ast.AST) -> ExpressionError:
    column = getattr(node, "col_offset", None)
    column = column + 1 if column is not None else None
    where = f" at column {column}" if column is not None else ""
    return ExpressionError(f"{message}{where}", column=column)


_local = threading.local()


def _evaluator() -> _Evaluator:
    ev: _Evaluator | None = getattr(_local, "evaluator", None)
    if ev is None:
        ev = _local.evaluator = _Evaluator()
    return ev


@dataclass(frozen=True, slots=True)
class Expression:
    """A parsed expression.

    ``names`` are the free names it reads (excluding comprehension variables and
    functions); ``steps`` the step names it reads through ``steps.NAME`` or
    ``steps['NAME']``.
    """

    source: str
    tree: ast.expr
    names: frozenset[str]
    steps: frozenset[str]

    def evaluate(self, names: Mapping[str, Any]) -> Any:
        """Evaluate with ``names`` in scope; raise :class:`ExpressionError` on any failure."""
        ev = _evaluator()
        ev.names = {**_CONSTANTS, **names}
        try:
            return ev.eval(self.source, previously_parsed=self.tree)
        except ExpressionError as exc:
            raise ExpressionError(exc.reason, expression=self.source, column=exc.column) from None
        except simpleeval.NameNotDefined as exc:
            name = getattr(exc, "name", "?")
            msg = f"unknown name {name!r}{_suggest(name, names.keys())}"
            raise ExpressionError(msg, expression=self.source) from None
        except simpleeval.InvalidExpression as exc:
            raise ExpressionError(str(exc), expression=self.source) from None
        except RecursionError:
            raise ExpressionError("expression nests too deeply", expression=self.source) from None
        except (ArithmeticError, TypeError, ValueError, AttributeError, KeyError, IndexError) as exc:
            raise ExpressionError(f"{type(exc).__name__}: {exc}", expression=self.source) from None
        finally:
            ev.names = {}

    def fields(self, root: str) -> frozenset[str]:
        """Names read as ``root.NAME`` or ``root['NAME']`` (e.g. the inputs it uses)."""
        found = set()
        for node in ast.walk(self.tree):
            name = _field_of(node, root)
            if name is not None:
                found.add(name)
        return frozenset(found)

    def __str__(self) -> str:
        return self.source


def compile_expression(source: str) -> Expression:
    """Parse ``source`` once. ``${...}`` wrappers are accepted and stripped, so
    ``"${steps.a.score} > 0.5"`` and ``"steps.a.score > 0.5"`` mean the same.

    Raises :class:`ExpressionError` (with ``column``) on a syntax error or a
    construct the language refuses.
    """
    if not isinstance(source, str):
        raise ExpressionError(f"an expression must be a string, got {type(source).__name__}")
    if len(source) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(f"expression is longer than {MAX_EXPRESSION_LENGTH} characters")
    text = _strip_wrappers(source).strip()
    if not text:
        raise ExpressionError("empty expression")
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError as exc:
        detail = "" if exc.msg == "invalid syntax" else f" ({exc.msg})"
        where = f" at column {exc.offset}" if exc.offset and exc.offset <= len(text) else " (incomplete expression)"
        raise ExpressionError(f"invalid syntax{detail}{where}", expression=source, column=exc.offset) from None
    except (RecursionError, MemoryError, ValueError):
        raise ExpressionError("expression cannot be parsed", expression=source) from None
    names, steps = _check(tree, source)
    return Expression(source=text, tree=tree, names=frozenset(names), steps=frozenset(steps))


_ALLOWED_NODES: tuple[type[ast.AST], ...] = (
    ast.Expression,
    ast.BoolOp,
    ast.BinOp,
    ast.UnaryOp,
    ast.Compare,
    ast.IfExp,
    ast.Call,
    ast.keyword,
    ast.Attribute,
    ast.Subscript,
    ast.Slice,
    ast.Name,
    ast.Load,
    ast.Store,
    ast.Constant,
    ast.List,
    ast.Tuple,
    ast.Dict,
    ast.Set,
    ast.ListComp,
    ast.GeneratorExp,
    ast.DictComp,
    ast.comprehension,
    ast.JoinedStr,
    ast.FormattedValue,
    ast.boolop,
    ast.operator,
    ast.unaryop,
    ast.cmpop,
)


def _check(tree: ast.expr, source: str) -> tuple[set[str], set[str]]:
    names: set[str] = set()
    bound: set[str] = set()
    steps: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES):
            raise ExpressionError(f"{type(node).__name__} is not allowed", expression=source)
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise ExpressionError(f"access to private name {node.attr!r} is not allowed", expression=source)
        if isinstance(node, ast.Name):
            if node.id.startswith("_"):
                raise ExpressionError(f"access to private name {node.id!r} is not allowed", expression=source)
            if isinstance(node.ctx, ast.Store):
                bound.add(node.id)
            else:
                names.add(node.id)
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name | ast.Attribute):
                raise ExpressionError("only named functions can be called", expression=source)
            if isinstance(node.func, ast.Name) and node.func.id not in FUNCTIONS:
                msg = f"unknown function {node.func.id!r}{_suggest(node.func.id, FUNCTIONS)}"
                raise ExpressionError(msg, expression=source)
        step = _step_reference(node)
        if step is not None:
            steps.add(step)
    names -= bound
    names -= set(FUNCTIONS)
    names -= set(_CONSTANTS)
    return names, steps


def _step_reference(node: ast.AST) -> str | None:
    return _field_of(node, "steps")


def _field_of(node: ast.AST, root: str) -> str | None:
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == root:
        return node.attr
    if (
        isinstance(node, ast.Subscript)
        and isinstance(node.value, ast.Name)
        and node.value.id == root
        and isinstance(node.slice, ast.Constant)
        and isinstance(node.slice.value, str)
    ):
        return node.slice.value
    return None


def _strip_wrappers(source: str) -> str:
    """Replace each ``${expr}`` by ``(expr)`` so conditions may use either form."""
    if "${" not in source:
        return source
    from legato.expressions._template import split_template

    out = []
    for part in split_template(source):
        out.append(part if isinstance(part, str) else f"({part})")
    return "".join(out)


def closest(name: str, candidates: Iterable[Any], *, cutoff: float = 0.6) -> str | None:
    """The candidate closest to ``name`` (for "did you mean" hints), or None.

    ``cutoff`` is difflib's similarity ratio a candidate must reach (0.85: one or two
    letters off in a word of eight)."""
    options = [str(c) for c in candidates]
    match = difflib.get_close_matches(name, options, n=1, cutoff=cutoff)
    return match[0] if match else None


def _suggest(name: str, candidates: Iterable[Any]) -> str:
    best = closest(name, candidates)
    return f" (did you mean {best!r}?)" if best else ""
