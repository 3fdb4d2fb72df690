from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from legato.resilience import VirtualClock

# The scripted in-memory Model is shared with the resilience tests.
if "scripted_model" not in sys.modules:
    _path = Path(__file__).parent.parent / "resilience" / "scripted_model.py"
    _spec = importlib.util.spec_from_file_location("scripted_model", _path)
    assert _spec is not None
    assert _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["scripted_model"] = _module
    _spec.loader.exec_module(_module)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()
