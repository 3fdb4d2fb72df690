from __future__ import annotations

import anyio
import pytest

from legato import tasks

from .conftest import load_data

pytestmark = pytest.mark.local_models


def _norm(text: str) -> str:
    text = text.strip().lower()
    return text[4:] if text.startswith("the ") else text


def test_finds_at_least_90_percent_of_the_expected_entities(ner_task: tasks.NerTask) -> None:
    items = load_data("ner")["items"]
    assert len(items) == 20
    results = ner_task.run_sync([item["text"] for item in items])
    expected = found = 0
    for item, entities in zip(items, results, strict=True):
        got = {(_norm(e.text), e.label) for e in entities}
        for text, label in item["entities"]:
            expected += 1
            found += (_norm(text), label) in got
    assert found / expected >= 0.9, f"{found}/{expected}"


def test_offsets_point_into_the_text(ner_task: tasks.NerTask) -> None:
    text = "Ada Lovelace worked with Charles Babbage in London."
    [entities] = ner_task.run_sync([text])
    assert entities
    for entity in entities:
        assert text[entity.start : entity.end] == entity.text


async def test_concurrent_calls_are_batched_and_match_a_direct_batch(ner_task: tasks.NerTask) -> None:
    texts = [item["text"] for item in load_data("ner")["items"]]
    direct = ner_task.run_sync(texts)
    results: list[list[tasks.Entity] | None] = [None] * len(texts)
    before = ner_task.batches

    async def one(i: int) -> None:
        results[i] = await ner_task(texts[i])

    async with anyio.create_task_group() as tg:
        for i in range(len(texts)):
            tg.start_soon(one, i)
    assert results == direct
    assert ner_task.batches - before < len(texts)  # coalesced, not one model call per text


def test_labels_keep_only_the_requested_kinds() -> None:
    people = tasks.get("ner", labels=["PERSON"])
    [entities] = people.run_sync(["Barack Obama met Angela Merkel in Berlin."])
    assert {e.label for e in entities} == {"PERSON"}
