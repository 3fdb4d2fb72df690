"""In-process models from installed packages (no download): MiniLM embeddings, SmolLM2 chat."""

from __future__ import annotations

import math

import anyio
import pytest

from legato import errors
from legato.ledger import Ledger, use_ledger
from legato.providers import ChatRequest, EmbedRequest, LocalModel, Message, collect, create
from legato.providers._local import locate_model

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
    # The same GGUF named another way (lower-case alias, the file's path) reuses the
    # loaded weights: the process holds one SmolLM2, however many models wrap it.
    directory, gguf = locate_model("SmolLM2-135M-Instruct")
    assert gguf is not None
    for other in (LocalModel("smollm2-135m-instruct"), LocalModel("llama", path=str(directory / gguf))):
        await other.warm_up()
        assert other._loaded is model._loaded
        assert other._tokenizer is model._tokenizer
    await model.aclose()


async def test_one_load_per_files_whatever_the_name_and_however_concurrent() -> None:
    directory, _ = locate_model("all-MiniLM-L6-v2")
    models = [
        LocalModel("all-MiniLM-L6-v2"),
        LocalModel("sentence-transformers/all-MiniLM-L6-v2"),
        LocalModel("minilm", path=str(directory), kind="embed"),
        LocalModel("all-minilm-l6-v2"),
    ]
    assert all(m._loaded is None for m in models)  # lazy: nothing loads before warm_up or a call
    async with anyio.create_task_group() as tg:
        for m in models:
            tg.start_soon(m.warm_up)
    assert models[0]._loaded is not None
    assert all(m._loaded is models[0]._loaded for m in models)


def test_unknown_local_models_say_what_to_give() -> None:
    from legato.errors import ConfigError

    with pytest.raises(ConfigError, match="packaged model"):
        locate_model("no-such-model")
    with pytest.raises(ConfigError, match="not installed"):
        locate_model("x", package="legato_no_such_package")
