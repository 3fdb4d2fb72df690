"""Observability: OpenTelemetry traces, Prometheus metrics, redacted JSON logs.

- :class:`Instrumented` wraps any :class:`~legato.providers.Model`: a GenAI span and
  ``legato_model_*`` metrics per call (and, given ``on_call``, a :class:`ModelCall`);
  :class:`Recorded` reports each call as a :class:`ModelCall` only.
- :class:`TracingSubscriber` and :class:`MetricsSubscriber` are engine event
  subscribers: spans and counters for runs and steps.
- :class:`RoutingObserver` turns routing events (retries, fallbacks, breaker
  changes) into span events and metrics.
- :class:`Metrics` holds every series in its own registry; :meth:`Metrics.render`
  is what ``/metrics`` serves.
- :class:`Redactor` and :func:`configure_logging`: JSON logs with secrets removed.
- :func:`continue_trace` / :func:`inject_headers`: W3C ``traceparent`` propagation;
  :class:`TraceMiddleware` does it (plus a server span and HTTP metrics) for an ASGI app.
- :func:`setup` applies the ``observe:`` section of ``legato.yaml``.
- :func:`analyze_runs` turns stored runs into per-step statistics, the critical
  path and recommendations (``legato analyze``); :func:`build_options` predicts,
  with :func:`simulate` over the same runs, what alternative configurations would
  give (``legato analyze --options``).
- :func:`run_open_loop` and :func:`summarize` are ``legato bench``: an open-loop
  load test measured from each run's intended start; :func:`write_svg` plots it.

Tracing needs only the OpenTelemetry API; spans are recorded once an SDK tracer
provider is installed (``pip install 'legato[otel]'``). Without one the hooks cost
a single check.
"""

from typing import TYPE_CHECKING

from legato.observe._analysis import Analysis, StepStats, analyze_runs
from legato.observe._asgi import TraceMiddleware
from legato.observe._calls import ModelCall
from legato.observe._instrument import error_type
from legato.observe._logging import JsonFormatter, RedactingFilter, configure_logging, request_id
from legato.observe._metrics import Metrics, MetricsSubscriber, default_metrics
from legato.observe._observer import Instrumented, Recorded
from legato.observe._propagation import (
    continue_trace,
    current_traceparent,
    extract_context,
    httpx_request_hook,
    inject_headers,
)
from legato.observe._routing import RoutingObserver
from legato.observe._setup import LoggingConfig, Observability, ObserveConfig, TracingConfig, setup
from legato.observe._shape import StepShape, step_shapes
from legato.observe._tracing import GenAI, TracingSubscriber, get_tracer, tracing_enabled
from legato.redaction import REDACTED, Redactor, default_redactor

if TYPE_CHECKING:
    from legato.observe._load import (
        Capacity,
        Fire,
        LoadReport,
        Outcome,
        Sample,
        Slo,
        parse_duration,
        parse_rate,
        parse_slos,
        run_open_loop,
        summarize,
    )
    from legato.observe._options import Option, OptionsReport, build_options, parse_volume
    from legato.observe._simulate import Prediction, StepChange, samples_from_runs, simulate
    from legato.observe._svg import render_svg, write_svg

__all__ = [
    "REDACTED",
    "Analysis",
    "Capacity",
    "Fire",
    "GenAI",
    "Instrumented",
    "JsonFormatter",
    "LoadReport",
    "LoggingConfig",
    "Metrics",
    "MetricsSubscriber",
    "ModelCall",
    "Observability",
    "ObserveConfig",
    "Option",
    "OptionsReport",
    "Outcome",
    "Prediction",
    "Recorded",
    "RedactingFilter",
    "Redactor",
    "RoutingObserver",
    "Sample",
    "Slo",
    "StepChange",
    "StepShape",
    "StepStats",
    "TraceMiddleware",
    "TracingConfig",
    "TracingSubscriber",
    "analyze_runs",
    "build_options",
    "configure_logging",
    "continue_trace",
    "current_traceparent",
    "default_metrics",
    "default_redactor",
    "error_type",
    "extract_context",
    "get_tracer",
    "httpx_request_hook",
    "inject_headers",
    "parse_duration",
    "parse_rate",
    "parse_slos",
    "parse_volume",
    "render_svg",
    "request_id",
    "run_open_loop",
    "samples_from_runs",
    "setup",
    "simulate",
    "step_shapes",
    "summarize",
    "tracing_enabled",
    "write_svg",
]

# The simulator and the load test need numpy: loaded on first use, not with every import of legato.observe.
_LAZY = {
    "Option": "legato.observe._options",
    "OptionsReport": "legato.observe._options",
    "build_options": "legato.observe._options",
    "parse_volume": "legato.observe._options",
    "Prediction": "legato.observe._simulate",
    "StepChange": "legato.observe._simulate",
    "samples_from_runs": "legato.observe._simulate",
    "simulate": "legato.observe._simulate",
    **dict.fromkeys(
        [
            "Capacity",
            "Fire",
            "LoadReport",
            "Outcome",
            "Sample",
            "Slo",
            "parse_duration",
            "parse_rate",
            "parse_slos",
            "run_open_loop",
            "summarize",
        ],
        "legato.observe._load",
    ),
    **dict.fromkeys(["render_svg", "write_svg"], "legato.observe._svg"),
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'legato.observe' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
