"""Micro-batching of concurrent single-item calls into one batched call.

See :class:`Batcher`.
"""

from legato.batching._batcher import Batcher

__all__ = ["Batcher"]
