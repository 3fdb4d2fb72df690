from __future__ import annotations

import pytest

from legato.resilience import VirtualClock


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()
