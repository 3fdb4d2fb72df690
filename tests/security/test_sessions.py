"""Dashboard sign-in against a real ``legato serve`` process: server-side sessions that
logout and key revocation end, that expire; admin-scope keys sign in and are shown;
failed sign-ins are throttled per client address."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from _serve import MASTER
from legato.testing import FakeProvider

from .conftest import ServedGateway

pytestmark = pytest.mark.slow

DASHBOARD = """\
  dashboard:
    session_ttl_s: {ttl}
    login_attempts: 3
    login_window_s: 600
"""


def start(tmp: pytest.TempPathFactory, fake: FakeProvider, ttl: float) -> ServedGateway:
    gateway = ServedGateway(tmp.mktemp("sessions"), fake, extra=DASHBOARD.format(ttl=ttl))
    try:
        gateway.wait_ready()
    except Exception:
        gateway.stop()
        raise
    return gateway


@pytest.fixture(scope="module")
def gateway(fake: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedGateway]:
    served = start(tmp_path_factory, fake, ttl=3600)
    yield served
    served.stop()


def browser(gateway: ServedGateway, source: str = "127.0.0.1") -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=source)
    return httpx.Client(base_url=gateway.url, transport=transport, follow_redirects=False, timeout=30)


def sign_in(c: httpx.Client, key: str) -> httpx.Response:
    return c.post("/ui/login", data={"key": key, "next": "/ui/"})


def test_an_admin_scope_key_signs_in_and_the_dashboard_names_it(gateway: ServedGateway) -> None:
    key = gateway.create_key(["admin"], name="night-operator")
    with browser(gateway) as c:
        r = sign_in(c, key)
        assert r.status_code == 303
        page = c.get("/ui/")
        assert page.status_code == 200
        assert "night-operator" in page.text
        assert key[:12] in page.text
        assert "admin" in page.text
        assert c.get("/ui/models").status_code == 200


def test_session_ids_are_random_server_side_tokens(gateway: ServedGateway) -> None:
    cookies = []
    for _ in range(2):
        with browser(gateway) as c:
            r = sign_in(c, MASTER)
            assert r.status_code == 303
            header = r.headers["set-cookie"].lower()
            assert "httponly" in header
            assert "samesite=strict" in header
            assert "path=/ui" in header
            cookies.append(r.cookies["legato_dashboard"])
    assert cookies[0] != cookies[1]
    assert all(len(c) >= 40 and MASTER not in c for c in cookies)
    with browser(gateway) as c:  # a made-up session id opens nothing
        c.cookies.set("legato_dashboard", "x" * 43, domain="127.0.0.1", path="/ui")
        assert c.get("/ui/").status_code == 303


def test_logout_revokes_the_session(gateway: ServedGateway) -> None:
    with browser(gateway) as c:
        cookie = sign_in(c, MASTER).cookies["legato_dashboard"]
        assert c.get("/ui/").status_code == 200
        assert c.post("/ui/logout").status_code == 303
    with browser(gateway) as replay:  # the old cookie, presented again after logout
        replay.cookies.set("legato_dashboard", cookie, domain="127.0.0.1", path="/ui")
        r = replay.get("/ui/")
        assert r.status_code == 303
        assert r.headers["location"].startswith("/ui/login")
        assert replay.get("/ui/live/runs").status_code == 401


def test_revoking_the_key_ends_its_sessions(gateway: ServedGateway) -> None:
    key = gateway.create_key(["runs:read"], name="short-lived")
    with browser(gateway) as c:
        assert sign_in(c, key).status_code == 303
        assert c.get("/ui/").status_code == 200
        with gateway.client(MASTER) as admin:
            assert admin.delete(f"/v1/admin/keys/{key[:12]}").status_code == 200
        assert c.get("/ui/").status_code == 303


def test_failed_sign_ins_are_throttled_per_client(gateway: ServedGateway) -> None:
    with browser(gateway, "127.0.0.3") as attacker:
        for _ in range(3):
            assert sign_in(attacker, "lg_" + "x" * 40).status_code == 401
        refused = sign_in(attacker, MASTER)  # even the right key waits now
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 600
        assert "legato_dashboard" not in refused.cookies
    with browser(gateway, "127.0.0.4") as someone_else:
        assert sign_in(someone_else, MASTER).status_code == 303


def test_sessions_expire(fake: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> None:
    served = start(tmp_path_factory, fake, ttl=1)
    try:
        with browser(served) as c:
            assert sign_in(c, MASTER).status_code == 303
            cookie = c.cookies["legato_dashboard"]
        time.sleep(1.5)  # let the one-second session lapse
        with browser(served) as c:
            c.cookies.set("legato_dashboard", cookie, domain="127.0.0.1", path="/ui")
            assert c.get("/ui/").status_code == 303
    finally:
        served.stop()


def test_admins_see_who_is_signed_in(gateway: ServedGateway) -> None:
    reader = gateway.create_key(["runs:read"], name="curious-reader")
    with browser(gateway, "127.0.0.6") as c:
        assert sign_in(c, reader).status_code == 303
        assert c.get("/ui/sessions").status_code == 403  # not for non-admin keys
        assert "/ui/sessions" not in c.get("/ui/").text
    with gateway.client(MASTER) as admin:
        page = admin.get("/ui/sessions")
        assert page.status_code == 200
        row = next(line for line in page.text.splitlines() if "curious-reader" in line)
        assert reader[:12] in row
        assert "127.0.0.6" in row
        assert reader not in page.text


def test_sign_in_and_out_are_refused_from_another_site(gateway: ServedGateway) -> None:
    with browser(gateway) as c:
        foreign = c.post("/ui/login", data={"key": MASTER}, headers={"origin": "https://evil.example"})
        assert foreign.status_code == 403
        assert "legato_dashboard" not in foreign.cookies
        assert sign_in(c, MASTER).status_code == 303
        assert c.post("/ui/logout", headers={"sec-fetch-site": "cross-site"}).status_code == 403
        assert c.get("/ui/").status_code == 200  # still signed in
