"""The ``observe:`` section of ``legato.yaml`` and :func:`setup`, which applies it.

.. code-block:: yaml

    observe:
      tracing:
        enabled: true              # needs the otel extra: pip install 'legato[otel]'
        exporter: otlp             # otlp (HTTP/protobuf) | console | none
        endpoint: http://127.0.0.1:4318/v1/traces   # default: OTEL_EXPORTER_OTLP_* variables
        service_name: legato
        sample_ratio: 1.0
      logging:
        level: info
        format: json               # json | text
      redact: ['acme_[a-z0-9]{20}']  # extra secret patterns (regular expressions)
      redact_keys: [x-acme-token]    # extra header / field names whose values are secrets

The SDK and the exporter are imported only when tracing is enabled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from legato.errors import ConfigError
from legato.observe._logging import configure_logging
from legato.observe._metrics import Metrics, MetricsSubscriber, default_metrics
from legato.observe._routing import RoutingObserver
from legato.observe._tracing import TracingSubscriber
from legato.redaction import Redactor, set_default_redactor

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from legato.config import LegatoConfig

__all__ = ["LoggingConfig", "Observability", "ObserveConfig", "TracingConfig", "setup"]


class TracingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    exporter: Literal["otlp", "console", "none"] = "otlp"
    endpoint: str | None = Field(None, description="OTLP/HTTP traces endpoint; default from OTEL_EXPORTER_OTLP_*.")
    service_name: str = "legato"
    sample_ratio: float = Field(1.0, ge=0.0, le=1.0)


class LoggingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    level: str = "info"
    format: Literal["json", "text"] = "json"

    @field_validator("level")
    @classmethod
    def _level(cls, v: str) -> str:
        if v.lower() not in ("debug", "info", "warning", "error", "critical"):
            raise ValueError("level must be debug, info, warning, error or critical")
        return v.lower()


class ObserveConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tracing: TracingConfig = Field(default_factory=TracingConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    redact: list[str] = Field(default_factory=list, description="Extra secret patterns (regular expressions).")
    redact_keys: list[str] = Field(default_factory=list, description="Extra field/header names holding secrets.")

    @field_validator("redact")
    @classmethod
    def _patterns(cls, v: list[str]) -> list[str]:
        Redactor(v)  # raises ValueError naming the bad pattern
        return v

    @classmethod
    def from_config(cls, config: LegatoConfig) -> ObserveConfig:
        return config.section("observe", cls)


@dataclass
class Observability:
    """What :func:`setup` built: pass ``subscribers`` to the engine's event bus."""

    metrics: Metrics
    redactor: Redactor
    tracer_provider: TracerProvider | None = None
    subscribers: list[Any] = field(default_factory=list)
    detach: list[Callable[[], None]] = field(default_factory=list)

    @property
    def tracing(self) -> TracingSubscriber:
        return next(s for s in self.subscribers if isinstance(s, TracingSubscriber))

    def shutdown(self) -> None:
        """Detach from the routing events, flush and stop the span exporter (call on exit)."""
        while self.detach:
            self.detach.pop()()
        shutdown = getattr(self.tracer_provider, "shutdown", None)
        if shutdown is not None:
            shutdown()


def _tracer_provider(cfg: TracingConfig) -> TracerProvider:
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
        from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio
    except ImportError as exc:
        raise ConfigError("observe.tracing.enabled needs the OpenTelemetry SDK: pip install 'legato[otel]'") from exc
    provider = SdkTracerProvider(
        resource=Resource.create({"service.name": cfg.service_name}),
        sampler=ParentBasedTraceIdRatio(cfg.sample_ratio),
    )
    exporter: SpanExporter | None = None
    if cfg.exporter == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise ConfigError(
                "observe.tracing.exporter 'otlp' needs opentelemetry-exporter-otlp-proto-http: "
                "pip install 'legato[otel]'"
            ) from exc
        exporter = OTLPSpanExporter(endpoint=cfg.endpoint) if cfg.endpoint else OTLPSpanExporter()
    elif cfg.exporter == "console":
        exporter = ConsoleSpanExporter()
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def setup(
    config: ObserveConfig | None = None,
    *,
    metrics: Metrics | None = None,
    tracer_provider: TracerProvider | None = None,
    install_global: bool = True,
    configure_logs: bool = True,
    attach_routing: bool = True,
) -> Observability:
    """Apply the ``observe`` configuration: redactor, logging, tracing, metrics.

    ``tracer_provider`` overrides the one the config would build (tests pass an SDK
    provider with an in-memory exporter). With ``install_global`` the provider
    becomes OpenTelemetry's global one (possible once per process) and the redactor
    the process default. With ``attach_routing`` a :class:`RoutingObserver` listens to
    the resilience wrappers' shared event hub.
    """
    cfg = config or ObserveConfig()
    redactor = Redactor(cfg.redact, keys=cfg.redact_keys)
    if install_global:
        set_default_redactor(redactor)
    if configure_logs:
        configure_logging(cfg.logging.level, format=cfg.logging.format, redactor=redactor)
    provider = tracer_provider
    if provider is None and cfg.tracing.enabled:
        provider = _tracer_provider(cfg.tracing)
    if provider is not None and install_global:
        from opentelemetry import trace

        trace.set_tracer_provider(provider)
    m = metrics if metrics is not None else default_metrics()
    subs: list[Any] = [TracingSubscriber(provider), MetricsSubscriber(m)]
    detach = [RoutingObserver(m).attach()] if attach_routing else []
    return Observability(metrics=m, redactor=redactor, tracer_provider=provider, subscribers=subs, detach=detach)
