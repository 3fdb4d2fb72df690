from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from legato.cache import chat_key, embed_key
from legato.providers import ChatRequest, EmbedRequest, Message, ResponseFormat, TextPart, Tool

MODEL = "gpt-4o-mini"

texts = st.text(min_size=1, max_size=40)
params = st.fixed_dictionaries(
    {},
    optional={
        "temperature": st.floats(min_value=0, max_value=2, allow_nan=False),
        "top_p": st.floats(min_value=0.01, max_value=1, allow_nan=False),
        "max_tokens": st.integers(min_value=1, max_value=4096),
        "seed": st.integers(min_value=0, max_value=2**31),
        "stop": st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=4),
        "tool_choice": st.sampled_from(["auto", "none", "required"]),
    },
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
irrelevant_metadata = st.dictionaries(
    st.text(max_size=10).filter(lambda k: k not in ("tenant", "cache")), json_values, max_size=4
)


def build(messages: list[str], body: dict[str, Any]) -> ChatRequest:
    return ChatRequest.model_validate({"messages": [{"role": "user", "content": m} for m in messages], **body})


@settings(max_examples=60, deadline=None)
@given(messages=st.lists(texts, min_size=1, max_size=3), body=params, data=st.data())
def test_parameter_order_does_not_change_the_key(messages: list[str], body: dict[str, Any], data: Any) -> None:
    shuffled = dict(data.draw(st.permutations(list(body.items()))))
    assert chat_key(build(messages, body), model=MODEL) == chat_key(build(messages, shuffled), model=MODEL)


@settings(max_examples=60, deadline=None)
@given(message=texts, body=params, metadata=irrelevant_metadata, user=st.none() | st.text(max_size=8))
def test_metadata_and_user_do_not_change_the_key(
    message: str, body: dict[str, Any], metadata: dict[str, Any], user: str | None
) -> None:
    plain = build([message], body)
    tagged = build([message], {**body, "metadata": metadata, "user": user})
    assert chat_key(plain, model=MODEL) == chat_key(tagged, model=MODEL)


@settings(max_examples=60, deadline=None)
@given(message=texts, body=params)
def test_explicit_defaults_equal_omitted_parameters(message: str, body: dict[str, Any]) -> None:
    explicit = {
        "temperature": None,
        "top_p": None,
        "max_tokens": None,
        "stop": None,
        "seed": None,
        "tools": None,
        "tool_choice": None,
        "response_format": None,
        **body,
    }
    assert chat_key(build([message], body), model=MODEL) == chat_key(build([message], explicit), model=MODEL)


@settings(max_examples=40, deadline=None)
@given(stops=st.lists(st.text(min_size=1, max_size=4), min_size=1, max_size=5), data=st.data())
def test_stop_sequences_are_a_set(stops: list[str], data: Any) -> None:
    other = data.draw(st.permutations(stops)) + stops[:1]
    assert chat_key(build(["q"], {"stop": stops}), model=MODEL) == chat_key(build(["q"], {"stop": other}), model=MODEL)


@settings(max_examples=40, deadline=None)
@given(schema=st.dictionaries(st.text(min_size=1, max_size=6), st.integers(), min_size=1, max_size=5))
def test_json_schema_key_order_does_not_matter(schema: dict[str, int]) -> None:
    reordered = dict(reversed(list(schema.items())))

    def with_tool(parameters: dict[str, Any]) -> ChatRequest:
        return ChatRequest(messages=[Message(role="user", content="q")], tools=[Tool(name="t", parameters=parameters)])

    assert chat_key(with_tool(schema), model=MODEL) == chat_key(with_tool(reordered), model=MODEL)


def test_equivalent_spellings_share_a_key() -> None:
    base = build(["hello"], {})
    assert chat_key(base, model=MODEL) == chat_key(
        ChatRequest(messages=[Message(role="user", content=[TextPart(text="hello")])]), model=MODEL
    )
    assert chat_key(base, model=MODEL) == chat_key(build(["hello"], {"response_format": {"type": "text"}}), model=MODEL)
    assert chat_key(base, model=MODEL) == chat_key(build(["hello"], {"model": MODEL}), model="other")
    assert chat_key(build(["hello"], {"stop": "x"}), model=MODEL) == chat_key(
        build(["hello"], {"stop": ["x"]}), model=MODEL
    )


def test_every_output_changing_parameter_changes_the_key() -> None:
    base = build(["hello"], {})
    variants = [
        build(["hello!"], {}),
        build(["hello", "hello"], {}),
        build(["hello"], {"temperature": 0.0}),
        build(["hello"], {"top_p": 0.5}),
        build(["hello"], {"max_tokens": 5}),
        build(["hello"], {"seed": 1}),
        build(["hello"], {"stop": ["."]}),
        build(["hello"], {"tool_choice": "none"}),
        build(["hello"], {"response_format": {"type": "json_object"}}),
        ChatRequest(messages=[Message(role="user", content="hello")], tools=[Tool(name="search")]),
        ChatRequest(messages=[Message(role="system", content="hello")]),
        ChatRequest(
            messages=[Message(role="user", content="hello")],
            response_format=ResponseFormat(type="json_schema", json_schema={"type": "object"}),
        ),
    ]
    keys = {chat_key(base, model=MODEL)} | {chat_key(v, model=MODEL) for v in variants}
    assert len(keys) == len(variants) + 1
    assert chat_key(base, model="gpt-4o") != chat_key(base, model=MODEL)
    assert chat_key(base, model=MODEL, stream=True) != chat_key(base, model=MODEL)


def test_namespace_and_tenant_scope_the_key() -> None:
    request = build(["hello"], {})
    acme = build(["hello"], {"metadata": {"tenant": "acme"}})
    globex = build(["hello"], {"metadata": {"tenant": "globex"}})
    keys = {
        chat_key(request, model=MODEL),
        chat_key(request, model=MODEL, namespace="other"),
        chat_key(acme, model=MODEL),
        chat_key(globex, model=MODEL),
        chat_key(acme, model=MODEL, namespace="other"),
    }
    assert len(keys) == 5


def test_embed_key_covers_inputs_model_and_dimensions() -> None:
    base = EmbedRequest(inputs=["a", "b"])
    assert embed_key(base, model="m") == embed_key(EmbedRequest(inputs=["a", "b"], metadata={"x": 1}), model="m")
    others = [
        EmbedRequest(inputs=["b", "a"]),
        EmbedRequest(inputs=["a", "b"], dimensions=8),
        EmbedRequest(inputs=["a", "b"], metadata={"tenant": "t"}),
    ]
    keys = {embed_key(base, model="m"), embed_key(base, model="n")} | {embed_key(o, model="m") for o in others}
    assert len(keys) == 5


def test_key_is_stable_text() -> None:
    key = chat_key(build(["hello"], {"temperature": 0}), model=MODEL)
    assert key.startswith("v1:chat:")
    assert json.dumps(key)  # plain ASCII text, usable as a Redis or SQLite key
    assert key == chat_key(build(["hello"], {"temperature": 0.0}), model=MODEL)
