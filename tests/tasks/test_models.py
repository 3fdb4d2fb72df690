from __future__ import annotations

import pytest

from legato import tasks
from legato.errors import BadRequest
from legato.ledger import Ledger, use_ledger
from legato.providers import ChatRequest, EmbedRequest, Message, Model

from .test_summarize import ARTICLE

pytestmark = pytest.mark.local_models


def test_the_adapters_are_models() -> None:
    assert isinstance(tasks.LocalEmbedModel(), Model)
    assert isinstance(tasks.LocalChatModel(), Model)
    assert isinstance(tasks.ExtractiveSummaryModel(), Model)


async def test_extractive_model_summarises_the_user_message_and_says_it_is_degraded(
    embed_task: tasks.EmbedTask,
) -> None:
    model = tasks.ExtractiveSummaryModel(max_sentences=2)
    request = ChatRequest(
        messages=[Message(role="system", content="Summarise in two sentences."), Message(role="user", content=ARTICLE)]
    )
    ledger = Ledger(name="test")
    with use_ledger(ledger):
        response = await model.chat(request)
    source = tasks.split_sentences(ARTICLE)
    sentences = tasks.split_sentences(response.text)
    assert len(sentences) == 2
    assert all(s in source for s in sentences)
    assert response.degraded
    assert response.provider == "local"
    assert response.cost == 0.0
    assert ledger.calls == 1
    chunks = [chunk async for chunk in model.stream(request)]
    assert chunks[0].text == response.text
    assert chunks[-1].finish_reason == "stop"


async def test_extractive_model_needs_user_text_and_cannot_embed() -> None:
    model = tasks.ExtractiveSummaryModel()
    with pytest.raises(BadRequest, match="no user text"):
        await model.chat(ChatRequest(messages=[Message(role="system", content="Summarise.")]))
    with pytest.raises(BadRequest, match="cannot embed"):
        await model.embed(EmbedRequest(inputs=["x"]))
