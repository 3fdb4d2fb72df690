"""Step functions for ``document_insights.yaml``: find the documents, assemble the reports.

Everything in between (OCR, entities, sentiment, topic, embeddings, summary) is a
built-in ``task:`` or ``llm:`` step; these two functions are the glue around them.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
DOCUMENT_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".pdf"}


def list_documents(folder: str) -> list[str]:
    """The images and PDFs in ``folder`` (relative paths: to the working directory,
    else to this example's directory), sorted by name."""
    path = Path(folder)
    if not path.is_absolute() and not path.is_dir() and (HERE / path).is_dir():
        path = HERE / path
    if not path.is_dir():
        raise ValueError(f"folder not found: {folder}")
    found = sorted(str(p) for p in path.iterdir() if p.suffix.lower() in DOCUMENT_SUFFIXES)
    if not found:
        raise ValueError(f"no images or PDFs in {path}")
    return found


def build_reports(
    documents: list[str],
    text: list[dict[str, Any]],
    entities: list[list[dict[str, Any]]],
    sentiment: list[dict[str, Any]],
    topic: list[dict[str, Any]],
    embedding: list[list[float]],
    summary: list[Any],
    out_dir: str,
) -> list[dict[str, Any]]:
    """Write one JSON report per document to ``out_dir``; return a short digest of each."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    digests = []
    for i, path in enumerate(documents):
        name = Path(path).stem
        summary_text, summarised_by = _summary(summary[i])
        report = {
            "document": Path(path).name,
            "pages": len(text[i]["pages"]),
            "characters": len(text[i]["text"]),
            "summary": summary_text,
            "summarised_by": summarised_by,
            "topic": {"label": topic[i]["label"], "score": topic[i]["score"], "scores": topic[i]["scores"]},
            "sentiment": {"label": sentiment[i]["label"], "compound": sentiment[i]["compound"]},
            "entities": _grouped(entities[i]),
            "most_similar": _most_similar(i, documents, embedding),
            "text": text[i]["text"],
            "embedding": embedding[i],
        }
        target = out / f"{name}.json"
        target.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        digests.append(
            {
                "document": report["document"],
                "topic": report["topic"]["label"],
                "sentiment": report["sentiment"]["label"],
                "entities": report["entities"],
                "summary": summary_text,
                "summarised_by": summarised_by,
                "most_similar": report["most_similar"],
                "report": str(target),
            }
        )
    return digests


def _summary(value: Any) -> tuple[str, str]:
    """The text of a summary step's output and who produced it: an ``llm`` step's
    response (with its model, and whether a fallback answered) or a local summary."""
    if isinstance(value, str):
        return value, "model"
    if isinstance(value, dict):
        text = value.get("text") or value.get("content") or ""
        if "method" in value:
            return str(text), f"local extractive ({value['method']})"
        who = str(value.get("model") or "model")
        if value.get("degraded"):
            who += " (fallback: no provider key or provider unavailable)"
        return str(text), who
    return str(value), "model"


def _grouped(entities: list[dict[str, Any]]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for entity in entities:
        name = re.sub(r"\s+", " ", entity["text"]).strip()
        name = re.sub(r"^the\s+", "", name, flags=re.IGNORECASE) if entity["label"] in {"ORG", "GPE"} else name
        bucket = groups.setdefault(entity["label"], [])
        if name not in bucket:
            bucket.append(name)
    return dict(sorted(groups.items()))


def _most_similar(i: int, documents: list[str], embedding: list[list[float]]) -> dict[str, Any] | None:
    best: tuple[float, int] | None = None
    for j, other in enumerate(embedding):
        if j != i:
            cosine = sum(a * b for a, b in zip(embedding[i], other, strict=True)) / (
                math.sqrt(sum(a * a for a in embedding[i])) * math.sqrt(sum(b * b for b in other)) or 1.0
            )
            if best is None or cosine > best[0]:
                best = (cosine, j)
    if best is None:
        return None
    return {"document": Path(documents[best[1]]).name, "cosine": round(best[0], 3)}
