"""Building the ``groups:`` of ``legato.yaml`` (schema: :mod:`legato.routing._schema`).

Names in a group (deployments, fallbacks, tiers, rule targets) refer to another
group or to a model of the ``models:`` section; references are resolved when first used, so
groups may fall back to each other (the router's visited set stops loops).

A router group is composed, outermost first, as
``Hedge(Timeout(total, Retry(Router([Timeout(per_attempt, deployment), ...]))))``,
each layer present only when configured. One retry budget is shared by all the
groups built together, so an outage cannot multiply load by going around.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from legato.errors import ConfigError, ModelUnavailable, NoDeploymentAvailable
from legato.providers import ChatChunk, ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, Model, ModelWrapper
from legato.resilience import (
    BreakerPolicy,
    Clock,
    EventHub,
    Hedge,
    HedgePolicy,
    Retry,
    RetryBudget,
    SystemClock,
    Timeout,
    default_hub,
)
from legato.routing._cascade import Cascade, Tier
from legato.routing._deployment import Deployment, DeploymentHealth, OutlierPolicy
from legato.routing._health import HealthChecker
from legato.routing._router import Fallbacks, Router
from legato.routing._schema import (
    BudgetSettings,
    GroupConfig,
    GroupsSection,
    Policies,
    RetrySettings,
    RoutingSection,
    TimeoutSettings,
)
from legato.routing._select import Rule, Selector
from legato.routing._strategies import strategy_named

if TYPE_CHECKING:
    from legato.config import LegatoConfig

__all__ = ["Groups", "ModelUnavailable", "build_groups"]


def _pick(group: Policies, defaults: Policies, field: str, fallback: Any) -> Any:
    value = getattr(group, field)
    if value is None:
        value = getattr(defaults, field)
    if value is None:
        return fallback
    return None if value is False else value


class _Missing:
    """Stands for a model that is configured but unavailable; every call is refused."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason

    def _refuse(self) -> NoDeploymentAvailable:
        return NoDeploymentAvailable(f"model {self.name!r} is unavailable: {self.reason}", provider="legato")

    async def chat(self, request: ChatRequest) -> ChatResponse:
        raise self._refuse()

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        raise self._refuse()
        yield ChatChunk()  # pragma: no cover - makes this an async generator

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        raise self._refuse()

    async def aclose(self) -> None:
        return None


class _Borrowed(ModelWrapper):
    """A model owned by a :class:`Groups`: closing it through a group is a no-op.

    Groups are shared (one per event loop and configuration), so a caller that closes
    the group it looked up must not close the connection pools under the other
    callers' in-flight requests. :meth:`Groups.aclose` closes the real models.
    """

    async def aclose(self) -> None:
        return None


class _Ref:
    """A Model standing for a name, resolved on first use (lets groups refer to each other)."""

    def __init__(self, name: str, groups: Groups) -> None:
        self.name = name
        self._groups = groups
        self._target: Model | None = None

    @property
    def target(self) -> Model:
        if self._target is None:
            self._target = self._groups.get(self.name)
        return self._target

    async def chat(self, request: ChatRequest) -> ChatResponse:
        return await self.target.chat(request)

    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        return self.target.stream(request)

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        return await self.target.embed(request)

    async def aclose(self) -> None:
        return None  # owned by the Groups it points into

    def __repr__(self) -> str:
        return f"_Ref({self.name!r})"


class Groups:
    """The groups built from configuration: ``get(name)`` returns a group's Model."""

    def __init__(
        self,
        groups: dict[str, GroupConfig],
        routing: RoutingSection,
        resolve_model: Callable[[str], Model],
        *,
        clock: Clock | None = None,
        events: EventHub | None = None,
    ) -> None:
        self.config = groups
        self.routing = routing
        self.resolve_model = resolve_model
        self.clock: Clock = clock or SystemClock()
        self.events = events or default_hub
        budget = _pick(Policies(), routing.defaults, "budget", BudgetSettings())
        self.budget: RetryBudget | None = (
            RetryBudget(budget.ratio, min_retries=budget.min_retries, window=budget.window, clock=self.clock)
            if budget is not None
            else None
        )
        self.routers: dict[str, Router] = {}
        self._built: dict[str, Model] = {}
        self._models: dict[str, Model] = {}
        self._check_references()

    def __contains__(self, name: object) -> bool:
        return name in self.config

    def names(self) -> list[str]:
        return list(self.config)

    def _check_references(self) -> None:
        for name, group in self.config.items():
            for ref in group.references():
                if ref == name and group.deployments is None:
                    raise ConfigError(f"groups.{name}: refers to itself")
            if group.guardrail is not None:
                from legato.guardrails import names

                if group.guardrail not in names():
                    known = ", ".join(names())
                    raise ConfigError(f"groups.{name}.guardrail: unknown guardrail {group.guardrail!r}; known: {known}")

    def _model(self, name: str, where: str) -> Model:
        if name in self.config:
            return _Ref(name, self)
        if name not in self._models:
            try:
                self._models[name] = _Borrowed(self.resolve_model(name))
            except ModelUnavailable as exc:
                self._models[name] = _Missing(name, str(exc))
            except KeyError as exc:
                raise ConfigError(f"{where}: {name!r} is neither a group nor a model in legato.yaml") from exc
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from exc
        return self._models[name]

    def get(self, name: str) -> Model:
        """The Model of group ``name`` (built on first use). ``KeyError`` if there is no such group."""
        if name not in self.config:
            raise KeyError(name)
        if name not in self._built:
            self._built[name] = self._guarded(self.config[name], self._build(name, self.config[name]))
        return self._built[name]

    @staticmethod
    def _guarded(group: GroupConfig, model: Model) -> Model:
        """The group behind its guardrail: every caller, other groups referring to it
        included, goes through the guard before any deployment is chosen, so a blocked
        request never counts against a deployment's health."""
        if group.guardrail is None:
            return model
        from legato.guardrails import apply

        return apply(group.guardrail, model)

    def _build(self, name: str, group: GroupConfig) -> Model:
        where = f"groups.{name}"
        if group.cascade is not None:
            tiers = [
                Tier(
                    self._model(t.model, f"{where}.cascade.tiers"),
                    name=t.name or t.model,
                    input_cost_per_mtok=t.price.input if t.price else None,
                    output_cost_per_mtok=t.price.output if t.price else None,
                )
                for t in group.cascade.tiers
            ]
            try:
                scorer = group.cascade.build_scorer()
            except ValueError as exc:
                raise ConfigError(f"{where}.cascade.scorer: {exc}") from exc
            return Cascade(name, tiers, scorer, clock=self.clock, events=self.events)
        if group.select is not None:
            rules = [
                Rule(
                    self._model(r.target, f"{where}.select.rules"),
                    max_input_tokens=r.max_input_tokens,
                    min_input_tokens=r.min_input_tokens,
                    needs=frozenset(r.needs),
                    tags=frozenset(r.tags),
                    max_budget_remaining=r.max_budget_remaining,
                    max_latency_sla=r.max_latency_sla,
                    capabilities=frozenset(r.capabilities) if r.capabilities is not None else None,
                    context_window=r.context_window,
                )
                for r in group.select.rules
            ]
            return Selector(name, rules, self._model(group.select.default, f"{where}.select.default"))
        return self._build_router(name, group, where)

    def _build_router(self, name: str, group: GroupConfig, where: str) -> Model:
        d = self.routing.defaults
        assert group.deployments is not None
        timeout: TimeoutSettings = _pick(group, d, "timeout", TimeoutSettings())
        deployments = []
        for dep in group.deployments:
            upstream = self._model(dep.model, f"{where}.deployments")
            if timeout.per_attempt is not None:
                upstream = Timeout(upstream, timeout.per_attempt, clock=self.clock, events=self.events)
            deployments.append(
                Deployment(
                    upstream,
                    name=dep.name or dep.model,
                    weight=dep.weight,
                    rpm=dep.rpm,
                    tpm=dep.tpm,
                    context_window=dep.context_window,
                    capabilities=frozenset(dep.capabilities) if dep.capabilities is not None else None,
                    input_cost_per_mtok=dep.price.input if dep.price else None,
                    output_cost_per_mtok=dep.price.output if dep.price else None,
                )
            )
        degrade: Model | str | None = None
        if group.degrade is not None:
            degrade = group.degrade.answer
            if group.degrade.model is not None:
                degrade = self._model(group.degrade.model, f"{where}.degrade")
        fallbacks = Fallbacks(
            on_failure=[self._model(n, f"{where}.fallbacks") for n in group.fallbacks.on_failure],
            context_window=[self._model(n, f"{where}.fallbacks") for n in group.fallbacks.context_window],
            content_filtered=[self._model(n, f"{where}.fallbacks") for n in group.fallbacks.content_filtered],
            degrade=degrade,
        )
        try:
            router = Router(
                name,
                deployments,
                strategy=strategy_named(_pick(group, d, "strategy", "round_robin")),
                fallbacks=fallbacks,
                breaker=_pick(group, d, "breaker", BreakerPolicy()),
                outlier=_pick(group, d, "outlier", OutlierPolicy()),
                budget=self.budget if self.budget is not None else False,
                clock=self.clock,
                events=self.events,
            )
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        for state, dep in zip(router.deployments, group.deployments, strict=True):
            missing = self._models.get(dep.model)
            if isinstance(missing, _Missing):
                state.mark_unavailable(missing.reason)
        self.routers[name] = router
        model: Model = router
        retry: RetrySettings | None = _pick(group, d, "retry", RetrySettings())
        if retry is not None and retry.max_attempts > 1:
            model = Retry(
                model,
                retry.policy(),
                budget=self.budget if self.budget is not None else False,
                clock=self.clock,
                events=self.events,
                name=name,
            )
        if timeout.total is not None:
            model = Timeout(model, timeout.total, clock=self.clock, events=self.events, name=name)
        hedge: HedgePolicy | None = _pick(group, d, "hedge", None)
        if hedge is not None:
            model = Hedge(model, hedge, clock=self.clock, events=self.events, name=name)
        return model

    def router(self, name: str) -> Router | None:
        """The Router behind a deployments group (None for cascades and selectors)."""
        self.get(name)
        return self.routers.get(name)

    def health(self) -> list[DeploymentHealth]:
        """The deployments of every deployments group (building the groups not used
        yet); a group that cannot be built has none to report (``get`` says why)."""
        out: list[DeploymentHealth] = []
        for name in self.config:
            try:
                router = self.router(name)
            except ConfigError:
                continue
            if router is not None:
                out.extend(router.health())
        return out

    def health_checker(self) -> HealthChecker:
        routers = [r for r in (self.router(n) for n in self.config) if r is not None]
        hc = self.routing.health_check
        return HealthChecker(routers, interval=hc.interval, timeout=hc.timeout, clock=self.clock)

    async def aclose(self) -> None:
        """Close every model the groups opened (their connection pools)."""
        for model in self._models.values():
            await (model.inner if isinstance(model, _Borrowed) else model).aclose()


def build_groups(
    config: LegatoConfig,
    resolve_model: Callable[[str], Model],
    *,
    clock: Clock | None = None,
    events: EventHub | None = None,
) -> Groups:
    """Validate ``groups:`` and ``routing:`` of a :class:`legato.LegatoConfig` and return :class:`Groups`.

    ``resolve_model(name)`` returns the Model of a ``models:`` entry, raising
    ``KeyError`` for an unknown name. Every name a group refers to is checked now,
    so a typo fails at load time with the group and field in the message.
    """
    groups = config.section("groups", GroupsSection).root
    routing = config.section("routing", RoutingSection)
    built = Groups(groups, routing, resolve_model, clock=clock, events=events)
    for name, group in groups.items():
        for ref in group.references():
            if ref not in groups:
                built._model(ref, f"groups.{name}")
    return built
