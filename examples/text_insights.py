"""Step functions for ``text_insights.yaml``: the glue around the local-model steps.

Sentiment (VADER), topic (zero-shot classification) and entities (spaCy) are
built-in ``task:`` steps that the engine runs at the same time; these two plain
functions bind to their outputs by parameter name.
"""

from __future__ import annotations

from typing import Any


async def escalate(sentiment: dict[str, Any], classify: dict[str, Any]) -> str:
    """Runs only for negative texts (see ``when:`` in the YAML)."""
    return f"route to the {classify['label']} team (sentiment {sentiment['compound']:+.2f})"


async def report(
    sentiment: dict[str, Any], topic: dict[str, Any], entities: list[dict[str, Any]], escalation: str | None
) -> str:
    """One line that combines the three analyses."""
    names = ", ".join(f"{e['text']} ({e['label']})" for e in entities) or "none"
    line = f"{sentiment['label']} text about {topic['label']} ({topic['score']:.0%}); entities: {names}"
    return f"{line}; {escalation}" if escalation else line
