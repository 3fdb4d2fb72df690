from __future__ import annotations

import pytest

from legato import tasks

from .conftest import load_data

pytestmark = pytest.mark.local_models


@pytest.fixture(scope="module")
def data() -> dict[str, object]:
    return load_data("classify")  # type: ignore[no-any-return]


def test_zero_shot_is_right_on_at_least_80_percent_of_30_texts(
    data: dict[str, object], embed_task: tasks.EmbedTask
) -> None:
    classifier = tasks.get("classify", labels=data["labels"])
    items = data["items"]
    assert isinstance(items, list)
    assert len(items) == 30
    results = classifier.run_sync([text for text, _ in items])
    right = sum(r.label == expected for (_, expected), r in zip(items, results, strict=True))
    assert right / len(items) >= 0.8, f"{right}/{len(items)}"


async def test_scores_are_a_distribution_over_the_labels(embed_task: tasks.EmbedTask) -> None:
    classifier = tasks.get("classify", labels=["sports", "cooking", "music"])
    result = await classifier("Whisk the eggs, add flour and bake the cake for forty minutes.")
    assert result.label == "cooking"
    assert set(result.scores) == {"sports", "cooking", "music"}
    assert sum(result.scores.values()) == pytest.approx(1.0, abs=1e-4)
    assert result.score == max(result.scores.values())
    assert max(result.similarities, key=result.similarities.__getitem__) == "cooking"


def test_long_texts_are_read_in_windows(embed_task: tasks.EmbedTask) -> None:
    classifier = tasks.get("classify", labels=["sports", "cooking"], window=20)
    long_text = "The striker scored twice and the team won the league final. " * 30
    [result] = classifier.run_sync([long_text])
    assert result.label == "sports"


def test_several_descriptions_per_label() -> None:
    classifier = tasks.get(
        "classify", labels={"weather": ["rain and storms", "sunshine and heat"], "travel": "trains, flights, hotels"}
    )
    [result] = classifier.run_sync(["A heatwave with clear sunny skies is expected all week."])
    assert result.label == "weather"
