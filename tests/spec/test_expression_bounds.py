"""Expressions are bounded in total work and memory, not only per operation."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from legato.expressions import ExpressionError, compile_expression

HUGE = "${[[0]*10000 for x in [1]*10000]}"


def test_a_comprehension_of_large_lists_stops_early_with_text_and_column() -> None:
    expr = compile_expression(HUGE)
    tracemalloc.start()
    started = time.process_time()
    try:
        with pytest.raises(ExpressionError) as caught:
            expr.evaluate({})
        cpu = time.process_time() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
    assert cpu < 1.0, f"{cpu:.2f} s of CPU"  # the bound refuses it after ~100 of 10,000 items
    message = str(caught.value)
    assert "too much data" in message
    assert "at column 3" in message  # the inner [0]*10000 of '([[0]*10000 for ...])'
    assert caught.value.column == 3
    assert "[[0]*10000 for x in [1]*10000]" in message


def test_too_many_steps_is_refused_with_the_column() -> None:
    expr = compile_expression("[" + "+".join(["x"] * 30) + " for x in items]")
    with pytest.raises(ExpressionError, match=r"too much work .* at column \d+ in expression"):
        expr.evaluate({"items": list(range(9000))})


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("[x * 2 for x in items if x > 1]", [4, 6]),
        ("{k: v for k, v in pairs}", {"a": 1}),
        ("len(text * 3)", 9),
    ],
)
def test_ordinary_expressions_are_unaffected(source: str, expected: object) -> None:
    names = {"items": [1, 2, 3], "pairs": [("a", 1)], "text": "abc"}
    assert compile_expression(source).evaluate(names) == expected
