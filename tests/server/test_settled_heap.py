"""``legato serve`` takes what start-up loaded out of the garbage collector's sight
(``gc.freeze``) and collects its youngest generation less often; an app embedded in
another program leaves that program's heap alone."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from legato.server import create_app
from legato.server._serve import _owning_its_process

from .conftest import gateway_settings


@pytest.mark.parametrize("owns_process", [True, False])
def test_the_heap_is_settled_only_in_a_process_the_gateway_owns(tmp_path: Path, owns_process: bool) -> None:
    gc.unfreeze()
    thresholds = gc.get_threshold()
    app = create_app(gateway_settings(tmp_path))
    if owns_process:
        app = _owning_its_process(app)  # what `legato serve` does with the app it runs
    try:
        with TestClient(app) as client:
            assert client.get("/healthz").status_code == 200
            frozen = gc.get_freeze_count()
            young = gc.get_threshold()[0]
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
    assert (frozen > 10_000) is owns_process
    # the youngest generation collected less often: calls in flight die before it sees them
    assert (young == 10_000) is owns_process, young
