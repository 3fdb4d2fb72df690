"""The ``task:`` YAML step kind."""

from __future__ import annotations

from pathlib import Path

import pytest

from legato import tasks
from legato.errors import SpecError
from legato.spec import load_pipeline

pytestmark = pytest.mark.local_models

PIPELINE = """\
name: step_kind
inputs:
  texts: {type: list}
steps:
  mood:
    task: sentiment
    with: {text: "${inputs.texts}"}
    map: text
  people:
    task: ner
    options: {labels: [PERSON]}
    with: {text: "${inputs.texts}"}
    map: text
  topic:
    task: classify
    options:
      labels: {sport: "sport, matches and athletes", money: "money, banks and markets"}
    with: {text: "${inputs.texts}"}
    map: text
outputs:
  mood: ${steps.mood}
  people: ${steps.people}
  topic: ${steps.topic}
"""


async def test_task_steps_run_local_models_over_a_list(embed_task: tasks.EmbedTask, ner_task: tasks.NerTask) -> None:
    pipeline = load_pipeline(PIPELINE)
    texts = ["Serena Williams won a wonderful final.", "The bank lost money on bad loans."]
    result = await pipeline.run({"texts": texts})
    assert result.status == "succeeded", result
    out = result.result
    assert [m["label"] for m in out["mood"]] == ["positive", "negative"]
    assert out["people"][0] == [{"text": "Serena Williams", "label": "PERSON", "start": 0, "end": 15}]
    assert out["people"][1] == []
    assert [t["label"] for t in out["topic"]] == ["sport", "money"]


async def test_ocr_step_reads_a_path_relative_to_the_pipeline_file(tmp_path: Path) -> None:
    from .test_ocr import PARAGRAPHS, accuracy, render

    (tmp_path / "docs").mkdir()
    render(PARAGRAPHS[0]).save(tmp_path / "docs" / "page.png")
    (tmp_path / "p.yaml").write_text(
        "name: ocr_step\nsteps:\n  read:\n    task: ocr\n    with: {source: docs/page.png}\n"
        "  mood:\n    task: sentiment\n    with: {text: '${steps.read}'}\n"
    )
    result = await load_pipeline(tmp_path / "p.yaml").run({})
    assert result.status == "succeeded", result
    assert accuracy(PARAGRAPHS[0], result.outputs["read"]["text"]) >= 0.95
    assert result.outputs["mood"]["label"] in {"positive", "neutral", "negative"}


def test_spec_errors_name_the_field_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: bad\nsteps:\n"
        "  a:\n    task: translate\n    with: {text: hi}\n"
        "  b:\n    task: classify\n    options: {labels: []}\n    with: {text: hi}\n"
        "  c:\n    task: sentiment\n    colour: blue\n    with: {text: hi}\n"
    )
    with pytest.raises(SpecError) as info:
        load_pipeline(path)
    text = str(info.value)
    assert "bad.yaml:4" in text
    assert "'task' must be one of" in text
    assert "bad.yaml:8" in text
    assert "at least one label" in text
    assert "bad.yaml:12" in text
    assert "unknown field 'colour'" in text
