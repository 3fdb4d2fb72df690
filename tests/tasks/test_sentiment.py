from __future__ import annotations

import pytest

from legato import tasks

from .conftest import load_data

pytestmark = pytest.mark.local_models


def test_polarity_is_right_on_at_least_90_percent_of_the_labelled_sentences(
    sentiment_task: tasks.SentimentTask,
) -> None:
    items = load_data("sentiment")["items"]
    assert len(items) == 50
    results = sentiment_task.run_sync([text for text, _ in items])
    right = sum(result.label == expected for (_, expected), result in zip(items, results, strict=True))
    assert right / len(items) >= 0.9, f"{right}/{len(items)}"


async def test_scores_are_consistent_with_the_label(sentiment_task: tasks.SentimentTask) -> None:
    good = await sentiment_task("This is a wonderful, delightful day.")
    bad = await sentiment_task("This is a horrible, miserable day.")
    flat = await sentiment_task("The report has twelve pages.")
    assert good.label == "positive"
    assert good.compound > 0.05
    assert bad.label == "negative"
    assert bad.compound < -0.05
    assert flat.label == "neutral"
    assert good.positive + good.negative + good.neutral == pytest.approx(1.0, abs=0.01)
