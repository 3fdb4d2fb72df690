"""The task registry: shared, lazily loaded, clear errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from legato import tasks
from legato.errors import ConfigError


def test_get_returns_one_shared_object_per_name_and_options() -> None:
    assert tasks.get("sentiment") is tasks.get("sentiment")
    a = tasks.get("classify", labels={"x": "about x", "y": "about y"})
    b = tasks.get("classify", labels={"y": "about y", "x": "about x"})
    c = tasks.get("classify", labels=["x", "y"])
    assert a is b
    assert a is not c


def test_constructing_a_task_loads_nothing() -> None:
    task = tasks.get("summarize", max_sentences=7)
    assert not task.loaded


def test_unknown_task_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown task 'translate'.*ner.*sentiment"):
        tasks.get("translate")


def test_invalid_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="task 'ner'"):
        tasks.get("ner", colour="blue")
    with pytest.raises(ConfigError, match="at least one label"):
        tasks.get("classify", labels=[])
    with pytest.raises(ConfigError, match="engine must be"):
        tasks.get("ocr", engine="easyocr")
    with pytest.raises(ConfigError, match="max_sentences"):
        tasks.get("summarize", max_sentences=0)


def test_names_lists_every_builtin_task() -> None:
    assert {"ocr", "ner", "sentiment", "embed", "classify", "summarize"} <= set(tasks.names())


def test_importing_tasks_does_not_import_the_heavy_libraries() -> None:
    code = (
        "import sys, legato.tasks; "
        "heavy = [m for m in ('torch', 'spacy', 'transformers', 'sentence_transformers', 'pytesseract', 'numpy') "
        "if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


async def test_an_empty_batch_needs_no_model() -> None:
    task = tasks.get("ner", labels=["PERSON"])
    assert await task.run_batch([]) == []
