"""Dashboard sessions across two ``legato serve`` replicas sharing PostgreSQL and Redis:
a session opened on one works on the other and signing out on either ends it for
both; failed sign-ins are counted across replicas; the ownership rule holds on
PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from _serve import MASTER
from legato.testing import FakeProvider

from .conftest import ServedGateway, two_replicas

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

EXTRA = """\
  redis_prefix: "{prefix}"
  dashboard:
    login_attempts: 2
    login_window_s: 600
"""


@pytest.fixture(scope="module")
def replicas(
    fake: FakeProvider, postgres_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServedGateway, ServedGateway]]:
    prefix = f"legato-test:sessions-{uuid.uuid4().hex[:8]}:"
    with two_replicas(fake, tmp_path_factory, EXTRA.format(prefix=prefix), postgres_url=postgres_url,
                      redis_url=redis_url, redis_prefix=prefix) as started:  # fmt: skip
        yield started


def browser(gateway: ServedGateway, source: str = "127.0.0.1") -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=source)
    return httpx.Client(base_url=gateway.url, transport=transport, follow_redirects=False, timeout=30)


def test_a_session_is_shared_and_sign_out_ends_it_everywhere(replicas: tuple[ServedGateway, ServedGateway]) -> None:
    a, b = replicas
    with browser(a) as on_a:
        assert on_a.post("/ui/login", data={"key": MASTER}).status_code == 303
        cookie = on_a.cookies["legato_dashboard"]
    with browser(b) as on_b:
        on_b.cookies.set("legato_dashboard", cookie, domain="127.0.0.1", path="/ui")
        assert on_b.get("/ui/").status_code == 200
        assert on_b.post("/ui/logout").status_code == 303
    with browser(a) as again:
        again.cookies.set("legato_dashboard", cookie, domain="127.0.0.1", path="/ui")
        assert again.get("/ui/").status_code == 303


def test_failed_sign_ins_count_across_replicas(replicas: tuple[ServedGateway, ServedGateway]) -> None:
    a, b = replicas
    with browser(a, "127.0.0.5") as on_a:
        assert on_a.post("/ui/login", data={"key": "wrong"}).status_code == 401
    with browser(b, "127.0.0.5") as on_b:
        assert on_b.post("/ui/login", data={"key": "wrong again"}).status_code == 401
    for gateway in (a, b):
        with browser(gateway, "127.0.0.5") as c:
            refused = c.post("/ui/login", data={"key": MASTER})
            assert refused.status_code == 429
            assert int(refused.headers["retry-after"]) >= 1


def test_ownership_holds_on_postgresql(replicas: tuple[ServedGateway, ServedGateway]) -> None:
    a, b = replicas
    owner = a.create_key(["runs:read", "runs:write"], name="pg-owner")
    other = a.create_key(["runs:read", "runs:write"], name="pg-other")
    run = a.finished_run(owner, "shout", "postgres")
    with b.client(other) as c:
        assert c.get(f"/v1/runs/{run['id']}").status_code == 404
        assert c.get(f"/ui/runs/{run['id']}").status_code == 404
    with b.client(owner) as c:
        assert c.get(f"/v1/runs/{run['id']}").json()["outputs"] == {"upper": "POSTGRES"}
        assert c.get(f"/ui/runs/{run['id']}").status_code == 200
