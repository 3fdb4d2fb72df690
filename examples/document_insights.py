"""Step functions for ``document_insights.yaml``: find the documents, assemble the reports.

OCR, entities, sentiment, topic and embeddings are built-in ``task:`` steps. The
summary goes through the ``summarizer`` model group (Anthropic, then OpenAI, then
the local extractive summariser) of ``legato.yaml``: the one found the usual way
(``--config``, ``$LEGATO_CONFIG``, ``./legato.yaml``) when it defines that group,
else ``examples/legato.yaml``, so the example runs with no setup. (An ``llm:
summarizer`` step does the same when the group is always configured.)
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

from legato.config import LegatoConfig
from legato.providers import ChatRequest, Message

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


SUMMARY_GROUP = "summarizer"
SYSTEM = "Summarise the document in at most three sentences. Keep names and figures exact."
KEYS = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY")


def _config() -> LegatoConfig:
    config = LegatoConfig.load()
    if SUMMARY_GROUP in (config.raw("groups") or {}):
        return config
    return LegatoConfig.load(HERE / "legato.yaml")


async def summarize(document: dict[str, Any]) -> dict[str, Any]:
    """Summarise one OCR result through the ``summarizer`` group; say who answered and why."""
    import legato.models

    model = legato.models.get(SUMMARY_GROUP, _config())
    request = ChatRequest(
        messages=[Message(role="system", content=SYSTEM), Message(role="user", content=document["text"])],
        max_tokens=200,
        temperature=0,
    )
    try:
        response = await model.chat(request)
    finally:
        await model.aclose()
    note = None
    if response.degraded:
        missing = [k for k in KEYS if not os.environ.get(k)]
        reason = f"{' and '.join(missing)} not set" if missing else "the hosted models failed"
        note = f"degraded to the local extractive summary: {reason}"
    return {
        "text": response.text,
        "model": response.model,
        "provider": response.provider,
        "tier": response.tier,
        "degraded": response.degraded,
        "cost": response.cost,
        "note": note,
    }


def build_reports(
    documents: list[str],
    text: list[dict[str, Any]],
    entities: list[list[dict[str, Any]]],
    sentiment: list[dict[str, Any]],
    topic: list[dict[str, Any]],
    embedding: list[list[float]],
    summary: list[dict[str, Any]],
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


def _summary(value: dict[str, Any]) -> tuple[str, str]:
    """The summary text and who wrote it (with the reason when a fallback did)."""
    who = f"{value['model']} ({value['provider']})"
    if value.get("note"):
        who += f"; {value['note']}"
    return str(value["text"]), who


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
