"""pytest fixtures for testing code that calls models.

Enable in a ``conftest.py`` with ``pytest_plugins = ["legato.testing.pytest_plugin"]``
(root conftest) or ``from legato.testing.pytest_plugin import fake_provider``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from legato.testing._server import FakeProvider

__all__ = ["fake_provider"]


@pytest.fixture
async def fake_provider() -> AsyncIterator[FakeProvider]:
    """A running :class:`FakeProvider` (seed 0) on a free loopback port, per test."""
    async with FakeProvider(seed=0) as fake:
        yield fake
