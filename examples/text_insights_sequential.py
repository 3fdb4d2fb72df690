"""The text-insights workflow written the naive way: one call after another.

For each text: sentiment, then topic classification, then entity extraction, each
a separate blocking call. Same models as ``text_insights.yaml``; what differs is
only the orchestration (no parallel steps, no batching). ``bench/text_insights.py``
times this against the pipeline.

    python examples/text_insights_sequential.py "The delivery was late again."
"""

from __future__ import annotations

import json
import sys
from typing import Any

from legato import tasks

LABELS = ["billing", "shipping", "product", "support"]
ENTITY_LABELS = ["PERSON", "ORG", "GPE", "LOC", "PRODUCT", "FAC", "NORP"]


def analyse(text: str, labels: list[str] = LABELS) -> dict[str, Any]:
    """Sentiment, topic and entities of one text, one model call after another."""
    sentiment = tasks.get("sentiment").run_sync([text])[0]
    topic = tasks.get("classify", labels=labels).run_sync([text])[0]
    entities = tasks.get("ner", labels=ENTITY_LABELS).run_sync([text])[0]
    return {
        "sentiment": sentiment.label,
        "topic": topic.label,
        "entities": [e.text for e in entities],
    }


def main(texts: list[str]) -> None:
    for text in texts:
        print(json.dumps(analyse(text)))


if __name__ == "__main__":
    main(sys.argv[1:] or ["The package I ordered from Acme has not been delivered after three weeks. I am very angry."])
