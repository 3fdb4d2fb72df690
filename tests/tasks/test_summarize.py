from __future__ import annotations

import pytest

from legato import tasks

pytestmark = pytest.mark.local_models

ARTICLE = (
    "The city council met on Tuesday evening to discuss the future of the riverside parks. "
    "After a long debate, the council approved a budget of two million dollars for the parks. "
    "The plan adds three new playgrounds and repairs the old walking trails along the river. "
    "Several residents spoke in favour of the plan, saying the parks had been neglected for years. "
    "One councillor voted against it, arguing that the money should go to road repairs instead. "
    "The mayor said the parks budget was the largest investment in public green space in a decade. "
    "Work on the playgrounds will begin in the spring and should be finished by the autumn. "
    "The council will review the progress of the parks project at its meeting in June."
)


@pytest.fixture(scope="module")
def summarizer(embed_task: tasks.EmbedTask) -> tasks.SummarizeTask:
    task = tasks.get("summarize", max_sentences=3)
    assert isinstance(task, tasks.SummarizeTask)
    return task


def test_a_summary_is_made_of_source_sentences_in_document_order(summarizer: tasks.SummarizeTask) -> None:
    [summary] = summarizer.run_sync([ARTICLE])
    source = tasks.split_sentences(ARTICLE)
    assert len(source) == 8
    assert len(summary.sentences) == 3
    positions = [source.index(sentence) for sentence in summary.sentences]  # ValueError if not a source sentence
    assert positions == sorted(positions)
    assert summary.text == " ".join(summary.sentences)


def test_the_summary_prefers_central_sentences(summarizer: tasks.SummarizeTask) -> None:
    [summary] = summarizer.run_sync([ARTICLE])
    assert any("budget" in s for s in summary.sentences)


async def test_a_short_text_is_its_own_summary(summarizer: tasks.SummarizeTask) -> None:
    summary = await summarizer("Only one sentence here.  And a second one.")
    assert summary.sentences == ["Only one sentence here.", "And a second one."]


def test_sentences_split_around_abbreviations() -> None:
    assert tasks.split_sentences("Dr. Smith arrived at 5 p.m. on Monday. He left early.") == [
        "Dr. Smith arrived at 5 p.m. on Monday.",
        "He left early.",
    ]


def test_headings_stay_out_of_the_summary_and_apart_from_their_paragraph(summarizer: tasks.SummarizeTask) -> None:
    text = "Riverside parks budget approved\n\n" + ARTICLE
    assert tasks.split_sentences(text)[0] == "Riverside parks budget approved"
    [summary] = summarizer.run_sync([text])
    assert "Riverside parks budget approved" not in summary.text
    assert len(summary.sentences) == 3
