from __future__ import annotations

import pytest

from legato import tasks
from legato.errors import BadRequest
from legato.ledger import Ledger, use_ledger
from legato.providers import ChatRequest, Message, Model, PythonModel

from .test_summarize import ARTICLE

pytestmark = pytest.mark.local_models


def test_the_adapters_are_models() -> None:
    assert isinstance(tasks.LocalEmbedModel(), Model)


async def test_summarize_messages_as_a_python_model_summarises_the_user_message(
    embed_task: tasks.EmbedTask,
) -> None:
    model = PythonModel(tasks.summarize_messages, name="local/extractive")
    request = ChatRequest(
        messages=[
            Message(role="system", content="Summarise in three sentences."),
            Message(role="user", content=ARTICLE),
        ]
    )
    ledger = Ledger(name="test")
    with use_ledger(ledger):
        response = await model.chat(request)
    source = tasks.split_sentences(ARTICLE)
    sentences = tasks.split_sentences(response.text)
    assert len(sentences) == 3
    assert all(s in source for s in sentences)
    assert response.cost == 0.0
    assert ledger.calls == 1


def test_summarize_messages_needs_user_text() -> None:
    with pytest.raises(BadRequest, match="no user text"):
        tasks.summarize_messages(ChatRequest(messages=[Message(role="system", content="Summarise.")]))
