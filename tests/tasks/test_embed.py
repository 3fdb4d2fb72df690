from __future__ import annotations

import anyio
import numpy as np
import pytest

from legato import tasks
from legato.errors import BadRequest
from legato.ledger import Ledger, use_ledger
from legato.providers import ChatRequest, EmbedRequest, Message

pytestmark = pytest.mark.local_models

TEXTS = [
    "The cat sat on the mat.",
    "A dog barked at the postman this morning.",
    "Stock markets rallied after the interest rate decision.",
    "Bake the bread at two hundred degrees for half an hour.",
    "Short.",
    "A much longer sentence that goes on and on about the weather, the trains, the price of coffee and more.",
]


async def test_batched_embeddings_equal_single_calls(embed_task: tasks.EmbedTask) -> None:
    singles = [embed_task.run_sync([text])[0] for text in TEXTS]
    batched: list[list[float] | None] = [None] * len(TEXTS)
    before = embed_task.batches

    async def one(i: int) -> None:
        batched[i] = await embed_task(TEXTS[i])

    async with anyio.create_task_group() as tg:
        for i in range(len(TEXTS)):
            tg.start_soon(one, i)
    assert embed_task.batches - before < len(TEXTS)
    np.testing.assert_allclose(np.array(batched), np.array(singles), atol=1e-5)


def test_vectors_are_unit_length_and_similar_texts_are_close(embed_task: tasks.EmbedTask) -> None:
    vectors = embed_task.encode(["A kitten sleeps on the sofa.", "A young cat naps on the couch.", "Quarterly tax"])
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.3


async def test_local_embed_model_speaks_the_model_protocol(embed_task: tasks.EmbedTask) -> None:
    model = tasks.LocalEmbedModel(embed_task)
    ledger = Ledger(name="test")
    with use_ledger(ledger):
        response = await model.embed(EmbedRequest(inputs=TEXTS[:2]))
    assert response.provider == "local"
    assert response.cost == 0.0
    assert len(response.vectors) == 2
    assert len(response.vectors[0]) == 384
    assert ledger.calls == 1
    assert ledger.unpriced_calls == 0
    with pytest.raises(BadRequest, match="384"):
        await model.embed(EmbedRequest(inputs=["x"], dimensions=1536))
    with pytest.raises(BadRequest, match="cannot chat"):
        await model.chat(ChatRequest(messages=[Message(role="user", content="hi")]))
