"""Step functions for ``text_insights.yaml``: small, dependency-free text analytics.

Sentiment, topic classification and entity extraction are independent of each
other, so the engine runs them at the same time; ``report`` waits for all three.
The heuristics here are deliberately simple (word lists and capitalisation); the
``task`` step kind swaps in local models for the same roles.
"""

from __future__ import annotations

import re
from collections import Counter

POSITIVE = {"good", "great", "excellent", "love", "happy", "fast", "reliable", "delighted", "impressive", "smooth"}
NEGATIVE = {"bad", "poor", "terrible", "hate", "slow", "broken", "angry", "disappointed", "late", "crash", "refund"}
TOPICS = {
    "billing": {"invoice", "refund", "charge", "price", "payment", "billing", "subscription"},
    "shipping": {"delivery", "shipping", "package", "courier", "late", "arrived", "tracking"},
    "product": {"feature", "app", "device", "battery", "screen", "update", "crash", "quality"},
    "support": {"support", "agent", "call", "ticket", "help", "response", "email"},
}
_WORD = re.compile(r"[A-Za-z']+")
_ENTITY = re.compile(r"\b(?:[A-Z][a-z]+|[A-Z]{2,})(?:\s+(?:[A-Z][a-z]+|[A-Z]{2,}))*\b")
_SENTENCE_START = re.compile(r"(?:^|[.!?]\s+)([A-Z][a-z]+)\b")


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


async def sentiment(text: str) -> dict[str, object]:
    """Lexicon sentiment: label and a score in [-1, 1]."""
    words = _words(text)
    pos = sum(w in POSITIVE for w in words)
    neg = sum(w in NEGATIVE for w in words)
    score = 0.0 if pos + neg == 0 else (pos - neg) / (pos + neg)
    label = "positive" if score > 0.2 else "negative" if score < -0.2 else "neutral"
    return {"label": label, "score": round(score, 3)}


def classify(text: str, labels: list[str] | None = None) -> dict[str, object]:
    """Topic by keyword overlap (a sync step: it runs in a worker thread)."""
    counts = Counter(_words(text))
    candidates = labels or sorted(TOPICS)
    scores = {t: sum(counts[w] for w in TOPICS.get(t, set())) for t in candidates}
    best = max(scores, key=lambda t: (scores[t], t)) if any(scores.values()) else "other"
    return {"label": best, "scores": scores}


async def entities(text: str) -> list[str]:
    """Capitalised phrases, minus words capitalised only because they start a sentence."""
    starts = {m.group(1) for m in _SENTENCE_START.finditer(text)}
    found: list[str] = []
    for match in _ENTITY.finditer(text):
        phrase = match.group(0)
        if phrase in starts and phrase.lower() in set(_words(text.lower())) - {phrase.lower()}:
            continue
        if phrase in starts and " " not in phrase:
            continue
        if phrase not in found:
            found.append(phrase)
    return found


async def escalate(sentiment: dict[str, object], classify: dict[str, object]) -> str:
    """Runs only for negative texts (see ``when:`` in the YAML)."""
    return f"route to the {classify['label']} team (sentiment {sentiment['score']})"


async def report(
    sentiment: dict[str, object], topic: dict[str, object], entities: list[str], escalation: str | None
) -> str:
    """One line that combines the three analyses."""
    names = ", ".join(entities) or "none"
    line = f"{sentiment['label']} text about {topic['label']}; entities: {names}"
    return f"{line}; {escalation}" if escalation else line
