"""The ``observe:`` section and :func:`setup`."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider

from legato.config import LegatoConfig
from legato.errors import ConfigError
from legato.observe import Metrics, MetricsSubscriber, ObserveConfig, TracingSubscriber, setup


def test_defaults_and_file_errors_name_the_field(tmp_path: Path) -> None:
    assert ObserveConfig.from_config(LegatoConfig()).tracing.enabled is False
    bad = tmp_path / "legato.yaml"
    bad.write_text("observe:\n  redact: ['(unclosed']\n  logging:\n    level: loud\n")
    with pytest.raises(ConfigError) as err:
        ObserveConfig.from_config(LegatoConfig.load(bad))
    text = str(err.value)
    assert "observe.redact" in text
    assert "invalid redaction pattern '(unclosed'" in text
    assert f"{bad}:4:" in text
    assert "observe.logging.level" in text


def test_setup_builds_an_sdk_provider_when_enabled() -> None:
    cfg = ObserveConfig.model_validate({"tracing": {"enabled": True, "exporter": "none", "service_name": "svc"}})
    obs = setup(cfg, metrics=Metrics(), install_global=False, configure_logs=False, attach_routing=False)
    try:
        assert isinstance(obs.tracer_provider, TracerProvider)
        assert obs.tracer_provider.resource.attributes["service.name"] == "svc"
        assert obs.tracing.enabled
        assert any(isinstance(s, MetricsSubscriber) for s in obs.subscribers)
    finally:
        obs.shutdown()


def test_setup_without_tracing_records_no_spans_and_detaches_routing() -> None:
    from legato.resilience import default_hub

    before = default_hub.active
    obs = setup(ObserveConfig(), metrics=Metrics(), install_global=False, configure_logs=False)
    assert obs.tracer_provider is None
    assert isinstance(obs.tracing, TracingSubscriber)
    assert not obs.tracing.enabled
    assert default_hub.active
    obs.shutdown()
    assert default_hub.active == before


def test_otlp_exporter_is_built_from_config() -> None:
    cfg = ObserveConfig.model_validate(
        {"tracing": {"enabled": True, "exporter": "otlp", "endpoint": "http://127.0.0.1:9/v1/traces"}}
    )
    obs = setup(cfg, metrics=Metrics(), install_global=False, configure_logs=False, attach_routing=False)
    obs.shutdown()  # nothing was recorded, so nothing is sent


@pytest.mark.slow
def test_multiprocess_mode_merges_worker_files(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import os
        from legato.observe import Metrics
        m = Metrics()
        m.record_cache(True)
        pid = os.fork()
        if pid == 0:
            Metrics().record_cache(True)
            os._exit(0)
        os.waitpid(pid, 0)
        print(m.render()[0].decode())
        """
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert 'legato_cache_requests_total{cache="response",result="hit"} 2.0' in out.stdout
