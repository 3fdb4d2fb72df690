"""``summarize``: extractive summaries with TextRank over sentence embeddings.

The text is split into sentences with ``nupunkt`` (a self-contained Punkt
implementation with its parameters in the wheel; NLTK's punkt data cannot be
fetched offline, which rules out sumy and TextBlob). Sentences are embedded with
all-MiniLM-L6-v2, a graph is built whose edge weights are their positive cosine
similarities, and networkx PageRank ranks them. The ``max_sentences`` best are
returned in document order, so the summary is made only of sentences of the
source, verbatim. A generative model (an ``llm`` step) replaces this when one is
configured; this task is what a model group degrades to without one.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from legato.errors import ConfigError
from legato.tasks._base import Task
from legato.tasks._embed import EmbedTask

__all__ = ["SummarizeTask", "Summary", "split_sentences"]

_CLOSERS = (".", "!", "?", "…", '."', ".'", '!"', '?"', ".)", "”", "’")


class Summary(BaseModel):
    model_config = ConfigDict(frozen=True)

    text: str
    sentences: list[str]
    method: str = "textrank"


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text`` (Punkt rules, via nupunkt), whitespace-normalised.

    A sentence never spans a blank line, so a heading without a full stop stays
    apart from the paragraph under it.
    """
    import nupunkt

    out: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        if paragraph.strip():
            out.extend(" ".join(str(s).split()) for s in nupunkt.sent_tokenize(paragraph) if str(s).strip())
    return out


class SummarizeTask(Task[str, Summary]):
    """Pick the ``max_sentences`` most central sentences of each text."""

    name: ClassVar[str] = "summarize"

    def __init__(self, max_sentences: int = 3, *, embedder: EmbedTask | None = None) -> None:
        super().__init__()
        if max_sentences < 1:
            raise ConfigError(f"task 'summarize': max_sentences must be >= 1, not {max_sentences}")
        self.max_sentences = max_sentences
        self.model_name = "textrank/all-MiniLM-L6-v2"
        self._embedder = embedder

    def _load(self) -> None:
        import networkx  # noqa: F401  (fail at warm-up, not at the first call)
        import nupunkt  # noqa: F401

        if self._embedder is None:
            from legato.tasks import get

            embedder = get("embed")
            assert isinstance(embedder, EmbedTask)
            self._embedder = embedder
        self._embedder.warm_up()

    def _run(self, items: list[str]) -> list[Summary]:
        return [self._one(text) for text in items]

    def _one(self, text: str) -> Summary:
        sentences = split_sentences(text)
        # Headings (no closing punctuation) rank high because they echo the whole text,
        # but read badly inside a summary: they are left out when there is enough else.
        complete = [s for s in sentences if s.endswith(_CLOSERS)]
        if len(complete) >= self.max_sentences:
            sentences = complete
        if len(sentences) <= self.max_sentences:
            return Summary(text=" ".join(sentences), sentences=sentences)
        ranks = self._rank(sentences)
        best = sorted(sorted(range(len(sentences)), key=lambda i: (-ranks[i], i))[: self.max_sentences])
        chosen = [sentences[i] for i in best]
        return Summary(text=" ".join(chosen), sentences=chosen)

    def _rank(self, sentences: list[str]) -> dict[int, float]:
        import networkx as nx
        import numpy as np

        assert self._embedder is not None
        vectors = self._embedder.encode(sentences)
        sims = np.clip(vectors @ vectors.T, 0.0, None)
        np.fill_diagonal(sims, 0.0)
        graph: Any = nx.from_numpy_array(sims)
        try:
            ranks: dict[int, float] = nx.pagerank(graph, weight="weight")
        except nx.PowerIterationFailedConvergence:  # pathological input: fall back to degree centrality
            ranks = {i: float(w) for i, w in enumerate(sims.sum(axis=1))}
        return ranks
