"""The Start form: fields generated from a pipeline's inputs and read back as typed inputs."""

from __future__ import annotations

import pytest

from legato import Pipeline
from legato.engine import InputDecl
from legato.server.ui._actions import FormError, form_fields, parse_inputs


def pipeline() -> Pipeline:
    decl = InputDecl("extra", int, required=False, default=3, type_name="integer")
    inputs = {"text": str, "count": int, "ratio": float, "loud": bool, "tags": list, "extra": decl}
    p = Pipeline("typed", inputs=inputs)

    @p.step
    async def work(text: str, count: int, ratio: float, loud: bool, tags: list, extra: int) -> str:
        return text

    return p


def test_each_input_gets_a_field_of_its_type() -> None:
    fields = {f.name: f for f in form_fields(pipeline().inputs)}
    kinds = {n: f.kind for n, f in fields.items()}
    assert kinds == {"text": "text", "count": "number", "ratio": "number", "loud": "checkbox", "tags": "json",
                     "extra": "number"}  # fmt: skip
    assert fields["extra"].value == "3"
    assert not fields["extra"].required


def test_the_form_is_read_back_as_typed_inputs() -> None:
    fields = form_fields(pipeline().inputs)
    form = {"input.text": ["héllo"], "input.count": ["7"], "input.ratio": ["0.5"], "input.loud": ["on"],
            "input.tags": ['["a", "b"]'], "input.extra": [""]}  # fmt: skip
    assert parse_inputs(fields, form) == {"text": "héllo", "count": 7, "ratio": 0.5, "loud": True, "tags": ["a", "b"]}
    assert parse_inputs(fields, {**form, "input.loud": []})["loud"] is False


@pytest.mark.parametrize(
    ("field", "raw", "message"),
    [("count", "seven", "count: 'seven' is not a"), ("tags", "[1,", "tags: not valid JSON")],
)
def test_a_field_that_cannot_be_read_is_named(field: str, raw: str, message: str) -> None:
    fields = form_fields(pipeline().inputs)
    form = {
        "input.text": ["x"],
        "input.count": ["1"],
        "input.ratio": ["1"],
        "input.tags": ["[]"],
        f"input.{field}": [raw],
    }
    with pytest.raises(FormError, match=message.replace("[", r"\[")):
        parse_inputs(fields, form)
