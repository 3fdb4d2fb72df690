"""The gateway's live parts, built by the app factory and shared by the routes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine

from legato.cost import CostEstimator
from legato.providers import ChatRequest, EmbedRequest, Model
from legato.server._audit import AuditLog
from legato.server._auth import Authenticator
from legato.server._calls import CallRecorder
from legato.server._catalog import ModelCatalog
from legato.server._keys import ApiKey, KeyStore
from legato.server._limits import KeyLimiter
from legato.server._settings import ServerSettings
from legato.server._spend import SpendRecorder
from legato.server._ssrf import SSRFPolicy

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from legato.server._runs import RunsService

__all__ = ["Gateway"]


@dataclass
class Gateway:
    settings: ServerSettings
    catalog: ModelCatalog
    keys: KeyStore
    auth: Authenticator
    limiter: KeyLimiter
    spend: SpendRecorder
    ssrf: SSRFPolicy
    audit: AuditLog
    engine: AsyncEngine  # the run store's database: keys, spend, audit, health
    runs: RunsService
    calls: CallRecorder  # each model call, kept for the dashboard
    redis: Redis | None = None  # shared counters, budgets and revocations, when configured
    _observers: dict[str, Model] = field(default_factory=dict)
    _estimator: CostEstimator | None = None

    def model(self, name: str) -> Model:
        """The served model ``name``, observed by one observer built once per model: spans,
        ``legato_model_*`` metrics, and each call kept for the dashboard as the key's that
        the route named (:func:`legato.server._calls.calls_of`). ``ModelNotFound`` when the
        catalog does not serve it."""
        model = self._observers.get(name)
        if model is None:
            from legato.observe import Instrumented

            model = self._observers[name] = Instrumented(self.catalog.get(name), on_call=self.calls.record)
        return model

    def worst_case(self, request: ChatRequest | EmbedRequest, model: Model) -> float:
        """The most ``request`` can cost on ``model`` (a model or a group) in USD: its
        input estimate plus ``max_tokens`` (or the gateway's ``max_output_tokens``) of
        output at the prices of the dearest model it may reach; 0 when none is priced."""
        if self._estimator is None:
            self._estimator = CostEstimator(default_output_tokens=self.settings.max_output_tokens)
        return self._estimator.worst_case(request, model) or 0.0

    def record_usage(self, key: ApiKey, model: str, input_tokens: int, output_tokens: int, cost: float | None) -> None:
        if key.id != "master":
            self.spend.add(key.id, model, input_tokens, output_tokens, cost)
