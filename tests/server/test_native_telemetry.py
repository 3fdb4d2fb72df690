"""The gateway's spans and HTTP metrics are legato's own (legato.observe)."""

from __future__ import annotations

from pathlib import Path

import pytest

from legato.server import create_app

from .conftest import gateway_settings


def test_fastapis_own_telemetry_is_off_so_requests_get_only_legatos_spans(tmp_path: Path) -> None:
    """FastAPI's native OpenTelemetry (releases that have it) would add a second server
    span and its own HTTP metrics beside legato's, and look at the providers on every
    request: the gateway turns it off."""
    app = create_app(gateway_settings(tmp_path))
    config = getattr(app, "_telemetry", None)
    if config is None:
        pytest.skip("this FastAPI has no native telemetry")
    assert (config["tracing"], config["metrics"], config["logs"]) == (False, False, False)
    assert not app._native_telemetry.enabled()
