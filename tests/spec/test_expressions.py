"""The safe expression language: what it evaluates, what it refuses, and fuzzing."""

from __future__ import annotations

import contextlib
import string
import types
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from legato.expressions import compile_value
from legato.expressions._expr import FUNCTIONS, STRING_METHODS
from legato.spec import ExpressionError, compile_expression

SCOPE: dict[str, Any] = {
    "inputs": {"text": "Hello World", "n": 3, "tags": ["a", "b"], "opts": {"lang": "en"}},
    "steps": {"sentiment": {"label": "negative", "score": -0.5}, "items": [1, 2, 3], "nothing": None},
}


@dataclass
class Obj:
    name: str = "x"
    _secret: str = "s"

    def method(self) -> str:
        return "called"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("steps.sentiment.label == 'negative'", True),
        ("${steps.sentiment.score} < 0 and inputs.n >= 3", True),
        ("not (inputs.n > 5) or false", True),
        ("len(steps.items) * 2 + inputs.n", 9),
        ("'a' in inputs.tags", True),
        ("'c' not in inputs.tags", True),
        ("steps.items[-1]", 3),
        ("steps.items[0:2]", [1, 2]),
        ("inputs.opts['lang']", "en"),
        ("inputs.opts.lang", "en"),
        ("steps['sentiment'].label", "negative"),
        ("inputs.text.lower().startswith('hello')", True),
        ("max(steps.items) if steps.nothing is None else 0", 3),
        ("sum([x * 2 for x in steps.items])", 12),
        ("round(abs(steps.sentiment.score), 1)", 0.5),
        ("null == steps.nothing", True),
        ("sorted(inputs.tags, reverse=True)", ["b", "a"]),
        ("{'k': inputs.n}['k']", 3),
    ],
)
def test_expressions_evaluate(source: str, expected: Any) -> None:
    assert compile_expression(source).evaluate(SCOPE) == expected


def test_dependencies_are_extracted() -> None:
    expr = compile_expression("steps.a.x > 1 and steps['b'] and inputs.q and c")
    assert expr.steps == {"a", "b"}
    assert expr.names == {"steps", "inputs", "c"}
    assert expr.fields("inputs") == {"q"}
    comp = compile_expression("[x for x in steps.a]")
    assert comp.names == {"steps"}


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("__import__('os')", "unknown function '__import__'"),
        ("inputs.__class__", "private name '__class__'"),
        ("inputs._private", "private name '_private'"),
        ("lambda: 1", "Lambda is not allowed"),
        ("(x := 1)", "NamedExpr is not allowed"),
        ("open('/etc/passwd')", "unknown function 'open'"),
        ("getattr(inputs, 'x')", "unknown function 'getattr'"),
        ("inputs.text.format()", None),
        ("a = 1", "invalid syntax"),
        ("", "empty expression"),
        ("1 +", "invalid syntax"),
        ("x" * 10_001, "longer than"),
        ("(lambda: 1)()", "only named functions can be called"),
        ("await x", "Await is not allowed"),
        ("yield 1", "invalid syntax"),
    ],
)
def test_forbidden_constructs_are_refused(source: str, message: str | None) -> None:
    with pytest.raises(ExpressionError) as info:
        compile_expression(source).evaluate(SCOPE)
    if message is not None:
        assert message in str(info.value)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("steps.sentiment.lable", "no field 'lable' (did you mean 'label'?)"),
        ("nope > 1", "unknown name 'nope'"),
        ("steps.items[10]", "index 10 out of range"),
        ("inputs.text + 1", "TypeError"),
        ("1 / 0", "ZeroDivisionError"),
        ("inputs.text.format()", "string method 'format' is not available"),
        ("'x' * 10 ** 9", "Sorry"),
        ("10 ** 10 ** 10", "Sorry"),
    ],
)
def test_evaluation_errors_are_expression_errors(source: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=None) as info:
        compile_expression(source).evaluate(SCOPE)
    assert message in str(info.value)


def test_objects_expose_public_data_only() -> None:
    scope = {"o": Obj()}
    assert compile_expression("o.name").evaluate(scope) == "x"
    with pytest.raises(ExpressionError, match="private name"):
        compile_expression("o._secret").evaluate(scope)
    with pytest.raises(ExpressionError, match="calling methods"):
        compile_expression("o.method()").evaluate(scope)


def test_templates_render_strings_and_pass_single_references_as_objects() -> None:
    assert compile_value("${steps.items}").render(SCOPE) == [1, 2, 3]
    assert compile_value("n=${inputs.n}, label=${steps.sentiment.label}").render(SCOPE) == "n=3, label=negative"
    assert compile_value("none:${steps.nothing}|${inputs.n > 1}").render(SCOPE) == "none:|true"
    assert compile_value("cost $${literal}").render(SCOPE) == "cost ${literal}"
    value = compile_value({"a": ["${inputs.n}", 2], "b": "${inputs.opts}"})
    assert value.render(SCOPE) == {"a": [3, 2], "b": {"lang": "en"}}
    assert value.steps == frozenset()
    assert compile_value("${steps.sentiment.label + '}'}").render(SCOPE) == "negative}"


# -- fuzzing --------------------------------------------------------------------------

ATOMS = st.sampled_from(
    [
        "1", "0", "-2.5", "'s'", "true", "null", "inputs.n", "inputs.text", "inputs.tags", "steps.items",
        "steps.sentiment.score", "steps.sentiment", "inputs.opts", "len(inputs.tags)", "x", "__class__",
        "inputs.__dict__", "steps._x", "[1, 2]", "{'a': 1}", "open", "print('x')",
    ]
)  # fmt: skip
OPS = st.sampled_from(
    [
        " + ",
        " - ",
        " * ",
        " / ",
        " // ",
        " % ",
        " ** ",
        " == ",
        " != ",
        " < ",
        " >= ",
        " and ",
        " or ",
        " in ",
        " not in ",
    ]
)


@st.composite
def expressions(draw: st.DrawFn, depth: int = 0) -> str:
    if depth > 3 or draw(st.booleans()):
        atom = draw(ATOMS)
        suffix = draw(st.sampled_from(["", ".label", "[0]", ".lower()", ".__class__", "[1:]", "()"]))
        return atom + suffix
    kind = draw(st.integers(0, 3))
    left = draw(expressions(depth + 1))
    if kind == 0:
        return f"({left}{draw(OPS)}{draw(expressions(depth + 1))})"
    if kind == 1:
        return f"not {left}"
    if kind == 2:
        return f"{left} if {draw(expressions(depth + 1))} else {draw(expressions(depth + 1))}"
    return f"[v for v in {left}]"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expressions())
def test_fuzz_structured_expressions_only_raise_expression_error(source: str) -> None:
    try:
        value = compile_expression(source).evaluate({**SCOPE, "x": 1})
    except ExpressionError:
        return
    # Whatever evaluates yields data or a whitelisted function/method, never a module,
    # a type's internals or an arbitrary callable.
    assert not isinstance(value, types.ModuleType | type)
    if callable(value):
        assert value in FUNCTIONS.values() or getattr(value, "__name__", "") in STRING_METHODS


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=string.printable, max_size=60))
def test_fuzz_arbitrary_text_only_raises_expression_error(source: str) -> None:
    with contextlib.suppress(ExpressionError):
        compile_expression(source).evaluate(SCOPE)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["__class__", "__globals__", "__subclasses__", "__builtins__", "_x", "__dict__"]), ATOMS)
def test_fuzz_private_names_are_never_reachable(private: str, atom: str) -> None:
    for source in (f"{atom}.{private}", f"{private}", f"({atom}).{private}.x"):
        with pytest.raises(ExpressionError):
            compile_expression(source).evaluate({**SCOPE, "x": 1})


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="${}'\"ab.", max_size=30))
def test_fuzz_templates_only_raise_expression_error(text: str) -> None:
    with contextlib.suppress(ExpressionError):
        compile_value(text).render(SCOPE)
