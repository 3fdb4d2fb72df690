"""The tasks of one pipeline file are prefetched together for exactly as long as that file's document lives."""

from __future__ import annotations

import gc

from legato._yaml import LocatedDict
from legato.spec import load_pipeline
from legato.steps import task as task_step

PIPELINE = """\
name: siblings
inputs:
  text: {type: str}
steps:
  mood:
    task: sentiment
    with: {text: "${inputs.text}"}
  people:
    task: ner
    options: {labels: [PERSON]}
    with: {text: "${inputs.text}"}
"""


def test_one_list_per_document_forgotten_when_the_document_is_collected() -> None:
    document = LocatedDict()
    siblings = task_step._siblings_of(document)
    assert task_step._siblings_of(document) is siblings
    key = id(document)
    del document
    gc.collect()
    assert key not in task_step._siblings  # no stale entry whose id a new document could reuse


def test_a_document_that_cannot_be_tracked_shares_nothing() -> None:
    plain: dict[str, object] = {}
    assert task_step._siblings_of(plain) is not task_step._siblings_of(plain)
    assert task_step._siblings_of(None) == []
    assert id(plain) not in task_step._siblings


def test_loading_a_pipeline_leaves_no_entry_behind() -> None:
    before = set(task_step._siblings)
    pipeline = load_pipeline(PIPELINE)
    gc.collect()
    assert set(task_step._siblings) <= before
    assert [step.name for step in pipeline.steps.values()] == ["mood", "people"]
