"""In-process models from installed packages (no download): MiniLM embeddings, SmolLM2 chat."""

from __future__ import annotations

import math

import pytest

from legato import errors
from legato.ledger import Ledger, use_ledger
from legato.providers import ChatRequest, EmbedRequest, LocalModel, Message, collect, create

pytestmark = [pytest.mark.slow, pytest.mark.local_models]


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


async def test_sentence_transformer_embeddings() -> None:
    model = create("local", "all-MiniLM-L6-v2")
    assert isinstance(model, LocalModel)
    ledger = Ledger()
    with use_ledger(ledger):
        response = await model.embed(EmbedRequest(inputs=["a small cat", "a little kitten", "quarterly bond yields"]))
    cat, kitten, bonds = response.vectors
    assert len(cat) == 384
    assert cosine(cat, kitten) > cosine(cat, bonds)
    assert response.cost == 0.0
    assert ledger.calls == 1
    assert ledger.input_tokens == response.usage.input_tokens > 0
    with pytest.raises(errors.BadRequest, match="embedding model"):
        await model.chat(ChatRequest(messages=[Message(role="user", content="hi")]))
    await model.aclose()


async def test_gguf_causal_lm_chat_and_stream() -> None:
    model = LocalModel("SmolLM2-135M-Instruct", max_new_tokens=4)
    await model.warm_up()
    request = ChatRequest(messages=[Message(role="user", content="Say hello.")])
    response = await model.chat(request)
    streamed = await collect(model.stream(request))
    assert response.text.strip()
    assert response.usage.output_tokens == 4
    assert response.finish_reason == "length"
    assert response.usage.input_tokens > 5
    assert streamed.text == response.text  # greedy decoding: same tokens either way
    assert streamed.usage == response.usage
    with pytest.raises(errors.BadRequest, match="does not embed"):
        await model.embed(EmbedRequest(inputs=["x"]))
    await model.aclose()


def test_unknown_local_models_say_what_to_give() -> None:
    from legato.errors import ConfigError
    from legato.providers._local import locate_model

    with pytest.raises(ConfigError, match="packaged model"):
        locate_model("no-such-model")
    with pytest.raises(ConfigError, match="not installed"):
        locate_model("x", package="legato_no_such_package")
