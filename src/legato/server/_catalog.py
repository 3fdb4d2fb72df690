"""What the gateway can call: model and group names mapped to :class:`~legato.providers.Model` objects.

:class:`ModelCatalog` is the one-method-per-question seam between the gateway and
the model layer: ``names()`` for ``GET /v1/models``, ``get(name)`` for a call,
``ready()`` for ``/readyz``. :class:`MappingCatalog` serves a fixed mapping (tests,
embedding the gateway in an application); :func:`catalog_from_config` serves the
named models and routing groups of ``legato.yaml`` through ``legato.models``, where
the routing, resilience, cache and budget wrappers are applied.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from legato.config import LegatoConfig
from legato.errors import ModelNotFound
from legato.providers import Model

__all__ = ["MappingCatalog", "ModelCatalog", "catalog_from_config"]


@runtime_checkable
class ModelCatalog(Protocol):
    def names(self) -> list[str]: ...

    def get(self, name: str) -> Model: ...

    async def ready(self) -> dict[str, bool]: ...

    async def aclose(self) -> None: ...


class MappingCatalog:
    """A fixed ``name -> Model`` mapping."""

    def __init__(self, models: Mapping[str, Model]) -> None:
        self._models = dict(models)

    def names(self) -> list[str]:
        return sorted(self._models)

    def get(self, name: str) -> Model:
        try:
            return self._models[name]
        except KeyError:
            raise ModelNotFound(f"model {name!r} does not exist", model=name) from None

    async def ready(self) -> dict[str, bool]:
        return dict.fromkeys(self._models, True)

    async def aclose(self) -> None:
        for model in self._models.values():
            await model.aclose()


class _ConfigCatalog:
    """Named models and groups of ``legato.yaml`` through the ``legato.models`` facade."""

    def __init__(self, config: LegatoConfig, only: list[str] | None) -> None:
        self._facade: Any = importlib.import_module("legato.models")
        self._config = config
        self._only = only
        self._cache: dict[str, Model] = {}

    def names(self) -> list[str]:
        listed = self._facade.names(self._config) if hasattr(self._facade, "names") else []
        names = sorted(set(listed))
        return [n for n in names if n in self._only] if self._only is not None else names

    def get(self, name: str) -> Model:
        if self._only is not None and name not in self._only:
            raise ModelNotFound(f"model {name!r} is not served by this gateway", model=name)
        model = self._cache.get(name)
        if model is None:
            model = self._cache[name] = self._facade.get(name, config=self._config)
        return model

    async def ready(self) -> dict[str, bool]:
        health = getattr(self._facade, "health", None)
        if health is None:
            return dict.fromkeys(self.names(), True)
        result: dict[str, bool] = await health(self.names(), config=self._config)
        return result

    async def aclose(self) -> None:
        for model in self._cache.values():
            await model.aclose()
        self._cache.clear()


def catalog_from_config(config: LegatoConfig, only: list[str] | None = None) -> ModelCatalog:
    return _ConfigCatalog(config, only)
