"""``classify``: zero-shot classification by embedding similarity.

No natural-language-inference model ships inside a PyPI or Debian package, so the
usual zero-shot pipeline (an NLI cross-encoder) is not available offline. Instead
each label is described in a few words (or several phrasings), the descriptions
and the text are embedded with all-MiniLM-L6-v2, and the label whose description
is most similar wins. ``scores`` is a softmax of the similarities (temperature
0.05), ``similarities`` the raw cosine values.

It is as good as the label descriptions: on the labelled set in the test suite
(30 short texts, 3 labels) it is right on at least 80% of them; see
docs/local-models.md for the measured figure. Long texts are cut into windows of
``window`` words (the model reads at most 256 word pieces) and their vectors
averaged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from legato.errors import ConfigError
from legato.tasks._base import Task
from legato.tasks._embed import EmbedTask

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["Classification", "ClassifyTask"]

_TEMPERATURE = 0.05


class Classification(BaseModel):
    model_config = ConfigDict(frozen=True)

    label: str
    score: float
    scores: dict[str, float]
    similarities: dict[str, float]


class ClassifyTask(Task[str, Classification]):
    """Pick one of ``labels`` for each text.

    ``labels`` is a list of label names (each used as its own description) or a
    mapping from label to a description or a list of descriptions.
    """

    name: ClassVar[str] = "classify"
    batched: ClassVar[bool] = True

    def __init__(
        self,
        labels: Sequence[str] | Mapping[str, str | Sequence[str]],
        *,
        embedder: EmbedTask | None = None,
        window: int = 150,
    ) -> None:
        super().__init__()
        self.labels = _normalise_labels(labels)
        self.window = window
        self.model_name = "zero-shot/all-MiniLM-L6-v2"
        self._embedder = embedder
        self._prototypes: Any = None  # one unit vector per description
        self._owner: list[int] = []  # label index of each description

    def _load(self) -> None:
        import numpy as np

        if self._embedder is None:
            from legato.tasks import get

            embedder = get("embed")
            assert isinstance(embedder, EmbedTask)
            self._embedder = embedder
        descriptions: list[str] = []
        for index, phrases in enumerate(self.labels.values()):
            descriptions.extend(phrases)
            self._owner.extend([index] * len(phrases))
        self._prototypes = self._embedder.encode(descriptions)
        self._owner_arr = np.asarray(self._owner)

    def _run(self, items: list[str]) -> list[Classification]:
        import numpy as np

        vectors = self._document_vectors(items)
        sims = vectors @ self._prototypes.T  # (texts, descriptions)
        names = list(self.labels)
        per_label = np.stack([sims[:, self._owner_arr == i].max(axis=1) for i in range(len(names))], axis=1)
        out: list[Classification] = []
        for row in per_label:
            exp = np.exp((row - row.max()) / _TEMPERATURE)
            probs = exp / exp.sum()
            best = int(row.argmax())
            out.append(
                Classification(
                    label=names[best],
                    score=round(float(probs[best]), 6),
                    scores={n: round(float(p), 6) for n, p in zip(names, probs, strict=True)},
                    similarities={n: round(float(s), 6) for n, s in zip(names, row, strict=True)},
                )
            )
        return out

    def _document_vectors(self, texts: list[str]) -> npt.NDArray[np.float32]:
        import numpy as np

        assert self._embedder is not None
        chunks: list[str] = []
        spans: list[tuple[int, int]] = []
        for text in texts:
            words = text.split()
            pieces = [" ".join(words[i : i + self.window]) for i in range(0, len(words), self.window)] or [text]
            spans.append((len(chunks), len(chunks) + len(pieces)))
            chunks.extend(pieces)
        matrix = self._embedder.encode(chunks)
        rows = [matrix[a:b].mean(axis=0) for a, b in spans]
        stacked = np.stack(rows)
        norms = np.linalg.norm(stacked, axis=1, keepdims=True)
        return np.asarray(stacked / np.maximum(norms, 1e-12), dtype=np.float32)


def _normalise_labels(labels: Sequence[str] | Mapping[str, str | Sequence[str]]) -> dict[str, list[str]]:
    if isinstance(labels, str):
        raise ConfigError("task 'classify': labels must be a list or a mapping, not a string")
    if isinstance(labels, Mapping):
        out: dict[str, list[str]] = {}
        for label, description in labels.items():
            phrases = [description] if isinstance(description, str) else list(description)
            if not phrases or not all(isinstance(p, str) and p.strip() for p in phrases):
                raise ConfigError(f"task 'classify': label {label!r} needs a non-empty description")
            out[str(label)] = phrases
    else:
        out = {str(label): [str(label)] for label in labels}
    if not out:
        raise ConfigError("task 'classify': needs at least one label")
    return out
