import pytest

from legato.testing.pytest_plugin import fake_provider

__all__ = ["each_wire", "fake_provider"]


@pytest.fixture(params=["lean", "aiohttp"])
def each_wire(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test on the default lean wire and again on the aiohttp wire (the one proxies use)."""
    if request.param == "aiohttp":
        from legato.providers import _http, _transport

        monkeypatch.setattr(_http, "LeanWire", _transport.AiohttpWire)
    return str(request.param)
