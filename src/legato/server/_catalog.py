"""What the gateway can call: model and group names mapped to :class:`~legato.providers.Model` objects.

:class:`ModelCatalog` is the one-method-per-question seam between the gateway and
the model layer: ``names()`` for ``GET /v1/models``, ``get(name)`` for a call,
``ready()`` for ``/readyz``, ``health()`` for the deployments of
its routing groups. :class:`MappingCatalog` serves a fixed mapping (tests,
embedding the gateway in an application); :func:`catalog_from_config` serves the
named models and routing groups of ``legato.yaml`` through ``legato.models``, where
the routing, resilience, cache and budget wrappers are applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from legato.config import LegatoConfig
from legato.errors import ConfigError, ModelNotFound, NoDeploymentAvailable
from legato.providers import Model, ModelWrapper
from legato.routing import DeploymentHealth, Router

__all__ = ["MappingCatalog", "ModelCatalog", "catalog_from_config", "check_models"]


@runtime_checkable
class ModelCatalog(Protocol):
    def names(self) -> list[str]: ...

    def get(self, name: str) -> Model: ...

    async def ready(self) -> dict[str, bool]: ...

    def health(self) -> list[DeploymentHealth]: ...

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

    def health(self) -> list[DeploymentHealth]:
        """The deployments of the mapping's :class:`~legato.routing.Router` models (also
        when wrapped, e.g. instrumented)."""
        routers = (_unwrapped(model) for model in self._models.values())
        return [h for router in routers if isinstance(router, Router) for h in router.health()]

    async def aclose(self) -> None:
        for model in self._models.values():
            await model.aclose()


def _unwrapped(model: Model) -> Model:
    while isinstance(model, ModelWrapper):
        model = model.inner
    return model


class _ConfigCatalog:
    """Named models (``models:``) and routing groups (``groups:``) of ``legato.yaml``.

    Only configured names are served: a client cannot reach an arbitrary
    ``provider/model`` through the gateway. Groups are built once (sharing one retry
    budget) and resolve their deployments through the same named models.
    """

    def __init__(self, config: LegatoConfig, only: list[str] | None, sealing: Any = None) -> None:
        self._config = config
        self._only = only
        self._sealing = sealing  # the run store's CacheSealing when it encrypts payloads
        self._cache: dict[str, Model] = {}
        self._groups: Any = None
        self._model_names: set[str] | None = None
        self._group_names: set[str] | None = None
        self._shared: dict[str, Any] = {}  # one cache backend and one budget store for every model

    def _names(self) -> tuple[set[str], set[str]]:
        if self._model_names is None or self._group_names is None:
            from legato import models as facade

            raw_groups = self._config.raw("groups")
            self._model_names = set(facade.names(self._config))
            self._group_names = set(raw_groups) if isinstance(raw_groups, Mapping) else set()
        return self._model_names, self._group_names

    def names(self) -> list[str]:
        models, groups = self._names()
        names = sorted(models | groups)
        return [n for n in names if n in self._only] if self._only is not None else names

    def _model(self, name: str) -> Model:
        from legato import models as facade

        try:
            return self._guard(facade.get(name, self._config))
        except ConfigError as exc:
            raise KeyError(name) from exc

    def _build(self, name: str) -> Model:
        from legato import models as facade

        _, groups = self._names()
        if name in groups:
            if self._groups is None:
                from legato.routing import build_groups

                self._groups = build_groups(self._config, self._model)
            return self._with_cache(name, self._groups.get(name))
        return self._with_cache(name, self._guard(facade.get(name, self._config)))

    def _guard(self, model: Model) -> Model:
        """A named model behind the budget guard (``budgets.per_day_usd``). Groups get it
        on each deployment, where the price is known."""
        if self._config.raw("budgets"):
            from legato.cost import Budget, BudgetGuard, BudgetsConfig

            b = BudgetsConfig.load(self._config)
            if b.per_day_usd is not None:
                store = self._shared.setdefault("budget_store", b.store_for())
                model = BudgetGuard(
                    model,
                    [Budget(b.per_day_usd, "day")],
                    store=store,
                    unpriced=b.unpriced,
                    margin=b.margin,
                    wait_s=b.wait_s,
                )
        return model

    def _with_cache(self, name: str, model: Model) -> Model:
        """The response cache (``cache:``), outermost so that a cache hit spends nothing.

        With an encrypting store every model is protected, and so is a guarded model or
        group: its cache values are sealed with the store's keys (``protect: encrypt``)
        or it is not cached (``protect: skip``, or no store key to seal with)."""
        if not self._config.raw("cache"):
            return model
        from legato import models as facade
        from legato.cache import CacheConfig

        c = CacheConfig.load(self._config)
        backend = self._shared.setdefault("cache_backend", c.backend_for(self._config.base_dir))
        if self._sealing is not None or facade.guarded(name, self._config):
            return c.protected(model, sealing=self._sealing, backend=backend)
        return c.wrap(model, backend=backend)

    def cache_backend(self) -> Any:
        """The response cache's backend, once a cached model was built (for erasure)."""
        return self._shared.get("cache_backend")

    def get(self, name: str) -> Model:
        if name not in self.names():
            raise ModelNotFound(f"model {name!r} does not exist", model=name)
        model = self._cache.get(name)
        if model is None:
            try:
                model = self._cache[name] = self._build(name)
            except ConfigError as exc:
                raise NoDeploymentAvailable(f"model {name!r} is not available: {exc}", model=name) from None
        return model

    async def ready(self) -> dict[str, bool]:
        """Per served name: a model is ready when it can be built; a group when at
        least one of its deployments is healthy (not ejected, breaker not open)."""
        result: dict[str, bool] = {}
        _, groups = self._names()
        for name in self.names():
            try:
                self.get(name)
            except (ModelNotFound, NoDeploymentAvailable):
                result[name] = False
                continue
            router = self._groups.router(name) if name in groups and self._groups is not None else None
            if router is None:
                result[name] = True
            else:
                result[name] = any(h.state in ("healthy", "half_open") for h in router.health())
        return result

    def health(self) -> list[DeploymentHealth]:
        """The deployments of every routing group built so far (``ready()`` builds them all)."""
        return self._groups.health() if self._groups is not None else []

    async def aclose(self) -> None:
        for name, model in self._cache.items():
            if name not in (self._group_names or set()):
                await model.aclose()
        if self._groups is not None:
            await self._groups.aclose()
        self._cache.clear()


def catalog_from_config(config: LegatoConfig, only: list[str] | None = None, *, sealing: Any = None) -> ModelCatalog:
    """The gateway's models from ``legato.yaml``; ``sealing`` (the run store's
    ``cache_sealing()``) encrypts response-cache values."""
    return _ConfigCatalog(config, only, sealing)


def check_models(config: LegatoConfig, only: list[str] | None = None) -> list[str]:
    """Build every model and group the gateway would serve, once, at start-up.

    An invalid entry (unknown provider, a field of the wrong type, an unknown option,
    a group naming a model that does not exist, ``server.models`` naming something
    not configured) raises :class:`ConfigError` whose first line names the model and
    the field. A model whose API key variable is not set is not fatal (another
    environment may set it): it comes back as a warning line, and ``/readyz`` lists
    that model as not ready. Nothing is connected: models open their pools on first use.
    """
    from legato import models as facade
    from legato.routing import build_groups

    configured = facade.configured(config)  # the section's own validation: field errors with file:line
    groups = set(facade.group_names(config))
    known = set(facade.names(config)) | groups
    for name in only or ():
        if name not in known:
            where = config.source or "legato.yaml"
            raise ConfigError(f"{where}: server.models: {name!r} is neither a model nor a group")
    warnings: list[str] = []
    for name, cfg in configured.items():
        missing = cfg.missing_secret()
        if missing:
            warnings.append(f"model {name!r} needs the environment variable {missing}, which is not set")
            continue
        facade.get(name, config)
    if groups:

        def resolve(name: str) -> Model:
            if name in configured and configured[name].missing_secret():
                from legato.routing import ModelUnavailable

                raise ModelUnavailable(f"model {name!r} has no API key")
            return facade.get(name, config)

        build_groups(config, resolve)
    return warnings
