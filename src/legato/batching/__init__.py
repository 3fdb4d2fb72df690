"""Micro-batching of concurrent single-item calls into one batched call.

* :class:`Batcher` — wraps any async batch function;
* :class:`BatchedEmbeddings` — a ``Model`` wrapper that merges concurrent ``embed``
  calls into one upstream call, with each caller's cost kept exact.
"""

from legato.batching._batcher import Batcher
from legato.batching._embed import BatchedEmbeddings

__all__ = ["BatchedEmbeddings", "Batcher"]
