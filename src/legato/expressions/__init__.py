"""The safe expression language of ``when:``, ``until:`` and ``${...}`` references,
and the templates that embed it in spec values.

A leaf: the engine (which evaluates conditions and bindings) and the spec loader
(which compiles them from YAML) both import it, and it imports neither, so the
engine never depends on the spec package that builds engine objects.
"""

from legato.expressions._expr import Expression, ExpressionError, closest, compile_expression
from legato.expressions._template import Placeholder, Value, compile_value, split_template

__all__ = [
    "Expression",
    "ExpressionError",
    "Placeholder",
    "Value",
    "closest",
    "compile_expression",
    "compile_value",
    "split_template",
]
