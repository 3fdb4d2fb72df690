"""``sentiment``: polarity with VADER (``vaderSentiment``; its lexicon ships in the wheel).

VADER is a rule-based model tuned on short English texts; a score costs about a
millisecond, so this task is never the slow one in a pipeline. The label follows
the thresholds the VADER authors recommend: compound >= 0.05 positive,
<= -0.05 negative, otherwise neutral.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from legato.tasks._base import Task

__all__ = ["Sentiment", "SentimentTask"]


class Sentiment(BaseModel):
    model_config = ConfigDict(frozen=True)

    label: Literal["positive", "negative", "neutral"]
    compound: float  # -1 (most negative) .. 1 (most positive)
    positive: float
    negative: float
    neutral: float


class SentimentTask(Task[str, Sentiment]):
    name: ClassVar[str] = "sentiment"
    batched: ClassVar[bool] = True

    def __init__(self, threshold: float = 0.05) -> None:
        super().__init__()
        self.threshold = threshold
        self.model_name = "vader-3.3.2"
        self._analyzer: Any = None

    def _load(self) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self._analyzer = SentimentIntensityAnalyzer()

    def _run(self, items: list[str]) -> list[Sentiment]:
        return [self._one(text) for text in items]

    def _one(self, text: str) -> Sentiment:
        scores = self._analyzer.polarity_scores(text)
        compound = float(scores["compound"])
        label: Literal["positive", "negative", "neutral"] = "neutral"
        if compound >= self.threshold:
            label = "positive"
        elif compound <= -self.threshold:
            label = "negative"
        return Sentiment(
            label=label,
            compound=compound,
            positive=float(scores["pos"]),
            negative=float(scores["neg"]),
            neutral=float(scores["neu"]),
        )
