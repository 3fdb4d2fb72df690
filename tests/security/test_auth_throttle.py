"""Guessing API keys is throttled per client address, against real ``legato serve``
processes: past ``auth_failures`` wrong keys within the window, the address gets 429 +
``Retry-After`` whatever it presents (a right key included, so a right guess does not
stand out), while other addresses and their valid keys are served as before; a request
without any key guesses nothing and is never counted. With Redis the count is shared
by the replicas."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from _serve import running
from legato.testing import FakeProvider

from .conftest import MASTER, ServedGateway, two_replicas

THROTTLE = """\
  auth_failures: 3
  auth_failure_window_s: 600
"""
WRONG = "lg_" + "w" * 40


def client(gateway: ServedGateway, source: str, key: str | None) -> httpx.Client:
    """A client whose connections come from ``source`` (a loopback address)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    transport = httpx.HTTPTransport(local_address=source)
    return httpx.Client(base_url=gateway.url, headers=headers, transport=transport, timeout=30)


def status(gateway: ServedGateway, source: str, key: str | None, path: str = "/v1/models") -> httpx.Response:
    with client(gateway, source, key) as c:
        return c.get(path)


@pytest.fixture
def gateway(fake: FakeProvider, tmp_path: Path) -> Iterator[ServedGateway]:
    with running(ServedGateway(tmp_path, fake, extra=THROTTLE)) as served:
        yield served


def test_wrong_keys_from_one_address_are_throttled_and_nobody_else_is(gateway: ServedGateway) -> None:
    valid = gateway.create_key(["chat"])
    assert status(gateway, "127.0.0.1", valid).status_code == 200
    for _ in range(3):
        r = status(gateway, "127.0.0.1", WRONG)
        assert r.status_code == 401, r.text
    r = status(gateway, "127.0.0.1", WRONG, "/v1/chat/completions")
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "too_many_failed_authentications"
    assert 1 <= int(r.headers["retry-after"]) <= 600
    # Now the address is refused whatever it presents: a right guess does not stand out.
    for key in (valid, MASTER, WRONG, "lg_" + "v" * 40):
        assert status(gateway, "127.0.0.1", key).status_code == 429
    assert status(gateway, "127.0.0.1", WRONG, "/mcp").status_code == 429
    # Other addresses, with the same valid key or their own, are served as before.
    assert status(gateway, "127.0.0.2", valid).status_code == 200
    assert status(gateway, "127.0.0.2", MASTER).status_code == 200
    assert status(gateway, "127.0.0.2", WRONG).status_code == 401


def test_requests_without_a_key_are_never_counted(gateway: ServedGateway) -> None:
    for _ in range(10):
        assert status(gateway, "127.0.0.3", None).status_code == 401
    assert status(gateway, "127.0.0.3", MASTER).status_code == 200


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.redis
def test_the_count_is_shared_by_replicas(
    fake: FakeProvider, postgres_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    prefix = f"legato-test:auth-{uuid.uuid4().hex[:8]}:"
    extra = THROTTLE + f'  redis_prefix: "{prefix}"\n'
    with two_replicas(fake, tmp_path_factory, extra, postgres_url=postgres_url, redis_url=redis_url,
                      redis_prefix=prefix) as (a, b):  # fmt: skip
        valid = a.create_key(["chat"])
        assert status(a, "127.0.0.4", WRONG).status_code == 401
        assert status(b, "127.0.0.4", WRONG).status_code == 401
        assert status(a, "127.0.0.4", WRONG).status_code == 401
        # Three wrong keys in all: both replicas now refuse the address, before checking its key.
        assert status(b, "127.0.0.4", valid).status_code == 429
        assert status(a, "127.0.0.4", valid).status_code == 429
        assert status(b, "127.0.0.5", valid).status_code == 200
        assert status(a, "127.0.0.5", valid).status_code == 200
