"""Session fixtures: each local model is loaded once for the whole test session."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from legato import tasks

DATA = Path(__file__).parent / "data"


def load_data(name: str) -> Any:
    return json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def ner_task() -> tasks.NerTask:
    task = tasks.get("ner")
    assert isinstance(task, tasks.NerTask)
    task.warm_up()
    return task


@pytest.fixture(scope="session")
def embed_task() -> tasks.EmbedTask:
    task = tasks.get("embed")
    assert isinstance(task, tasks.EmbedTask)
    task.warm_up()
    return task


@pytest.fixture(scope="session")
def sentiment_task() -> tasks.SentimentTask:
    task = tasks.get("sentiment")
    assert isinstance(task, tasks.SentimentTask)
    task.warm_up()
    return task


@pytest.fixture(scope="session")
def ocr_task() -> tasks.OcrTask:
    task = tasks.get("ocr")
    assert isinstance(task, tasks.OcrTask)
    task.warm_up()
    return task
