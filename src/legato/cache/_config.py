"""The ``cache:`` section of ``legato.yaml``.

::

    cache:
      backend: redis                 # memory (default), sqlite or redis
      url: env:LEGATO_REDIS_URL      # redis
      prefix: "legato:cache:"        # redis
      path: .legato/cache.db         # sqlite, relative to the config file
      namespace: default
      ttl_s: 3600                    # null: until evicted
      max_entries: 10000             # memory, sqlite
      max_bytes: 67108864            # memory
      cache_sampled: false           # also cache temperature > 0
      single_flight: true
      protect: encrypt               # or skip: what guarded or encrypted models do

``protect`` applies to models whose calls carry personal data that must not rest in
plaintext: every model when the run store encrypts payloads, and models or groups
with a guardrail. ``encrypt`` seals their cache values with the store's envelope keys
(caching is skipped when the store has no encryption key); ``skip`` never caches them.

:meth:`CacheConfig.wrap` puts a :class:`ResponseCache` with these settings around a
model; :meth:`CacheConfig.backend_for` builds just the backend (for a ``StepMemo``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from legato.cache._backends import CacheBackend, MemoryBackend
from legato.cache._protect import Sealing
from legato.cache._redis import RedisBackend
from legato.cache._response import ResponseCache
from legato.cache._sqlite import SQLiteBackend
from legato.config import LegatoConfig
from legato.providers import Model

__all__ = ["CacheConfig"]


class CacheConfig(BaseModel):
    """Typed ``cache:`` settings (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Literal["memory", "sqlite", "redis"] = "memory"
    url: str | None = None
    prefix: str = "legato:cache:"
    path: str = ".legato/cache.db"
    namespace: str = Field(default="default", min_length=1)
    ttl_s: float | None = Field(default=3600.0, gt=0)
    max_entries: int = Field(default=10_000, ge=1)
    max_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    cache_sampled: bool = False
    single_flight: bool = True
    protect: Literal["encrypt", "skip"] = "encrypt"

    @model_validator(mode="after")
    def _check(self) -> CacheConfig:
        if self.backend == "redis" and not self.url:
            raise ValueError("backend 'redis' needs url (e.g. url: env:LEGATO_REDIS_URL)")
        return self

    @classmethod
    def load(cls, config: LegatoConfig | None = None) -> CacheConfig:
        """The ``cache:`` section (defaults when absent); errors name the field and file:line."""
        return (config if config is not None else LegatoConfig.load()).section("cache", cls)

    def backend_for(self, base_dir: Path | None = None) -> CacheBackend:
        """A new backend as configured (``path`` is relative to ``base_dir``)."""
        if self.backend == "redis":
            assert self.url is not None
            return RedisBackend(self.url, prefix=self.prefix)
        if self.backend == "sqlite":
            path = Path(self.path)
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            return SQLiteBackend(path, max_entries=self.max_entries)
        return MemoryBackend(max_entries=self.max_entries, max_bytes=self.max_bytes)

    def wrap(
        self,
        model: Model,
        *,
        backend: CacheBackend | None = None,
        base_dir: Path | None = None,
        sealing: Sealing | None = None,
    ) -> ResponseCache:
        """``model`` behind a :class:`ResponseCache` with these settings (values sealed
        with ``sealing`` when given)."""
        return ResponseCache(
            model,
            backend if backend is not None else self.backend_for(base_dir),
            namespace=self.namespace,
            ttl=self.ttl_s,
            cache_sampled=self.cache_sampled,
            single_flight=self.single_flight,
            sealing=sealing,
        )

    def protected(self, model: Model, *, sealing: Sealing | None, backend: CacheBackend) -> Model:
        """A model whose calls must not rest in plaintext: behind a sealed cache
        (``protect: encrypt`` with a ``sealing``), or not cached at all."""
        if self.protect == "skip" or sealing is None:
            return model
        return self.wrap(model, backend=backend, sealing=sealing)
