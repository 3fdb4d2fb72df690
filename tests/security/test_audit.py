"""Audit records against a real ``legato serve`` process: sign-in (and refusals),
sign-out, key creation, revocation and limit changes, each with who, when and from
where, readable by admins only through ``GET /v1/admin/audit``."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from _serve import MASTER

from .conftest import ServedGateway

pytestmark = pytest.mark.slow


def records(served: ServedGateway, **params: Any) -> list[dict[str, Any]]:
    with served.client(MASTER) as c:
        r = c.get("/v1/admin/audit", params={"limit": 1000, **params})
        assert r.status_code == 200, r.text
        return list(r.json()["data"])


def test_key_changes_are_audited(served: ServedGateway) -> None:
    started = time.time()
    operator = served.create_key(["admin"], name="auditor")
    with served.client(operator) as c:
        created = c.post("/v1/admin/keys", json={"name": "tenant", "scopes": ["chat"]}).json()
        changed = c.patch(f"/v1/admin/keys/{created['prefix']}", json={"rpm": 7, "budget_usd": None})
        assert changed.status_code == 200, changed.text
        assert changed.json()["rpm"] == 7
        assert c.get(f"/v1/admin/keys/{created['id']}").json()["rpm"] == 7
        assert c.delete(f"/v1/admin/keys/{created['id']}").status_code == 200
    about = [r for r in records(served, since=started) if r["target"] == created["id"]]
    assert [r["action"] for r in about] == ["key_revoked", "key_limits_changed", "key_created"]
    operator_id = next(r["target"] for r in records(served, action="key_created") if r["detail"]["name"] == "auditor")
    for r in about:
        assert r["actor"] == operator_id
        assert r["actor_prefix"] == operator[:12]
        assert r["client"] == "127.0.0.1"
        assert started - 1 <= r["at"] <= time.time() + 1
        assert operator not in str(r)
    limits = about[1]["detail"]
    assert limits["before"] == {"rpm": None, "budget_usd": None}
    assert limits["after"] == {"rpm": 7, "budget_usd": None}


def test_dashboard_sign_in_and_out_are_audited(served: ServedGateway) -> None:
    started = time.time()
    viewer = served.create_key(["runs:read"], name="browser")
    with httpx.Client(base_url=served.url, follow_redirects=False, timeout=30) as c:
        assert c.post("/ui/login", data={"key": "lg_" + "y" * 40}).status_code == 401
        assert c.post("/ui/login", data={"key": "not even a key"}).status_code == 401
        assert c.post("/ui/login", data={"key": viewer}).status_code == 303
        assert c.post("/ui/logout").status_code == 303
    seen = [r for r in records(served, since=started) if r["action"].startswith("sign")]
    assert [r["action"] for r in seen] == ["sign_out", "sign_in", "sign_in_refused", "sign_in_refused"]
    assert seen[0]["actor_prefix"] == seen[1]["actor_prefix"] == viewer[:12]
    assert seen[2]["detail"] == {"prefix": None}  # nothing of a non-key secret is kept
    assert seen[3]["detail"] == {"prefix": "lg_yyyyyyyyy"}
    assert {r["client"] for r in seen} == {"127.0.0.1"}


@pytest.mark.parametrize(("scopes", "status"), [(None, 401), (["runs:read", "runs:write", "chat"], 403)])
def test_the_audit_log_is_for_admins(served: ServedGateway, scopes: list[str] | None, status: int) -> None:
    key = served.create_key(scopes) if scopes else None
    with served.client(key) as c:
        assert c.get("/v1/admin/audit").status_code == status
        assert c.patch("/v1/admin/keys/whatever", json={"rpm": 1}).status_code == status


@pytest.mark.parametrize(
    "body",
    [{"rpm": -1}, {"tpm": 10**12}, {"budget_usd": "lots"}, {"scopes": ["admin"]}, {"budget_period": None}],
)
def test_limit_changes_are_validated(served: ServedGateway, body: dict[str, Any]) -> None:
    target = served.create_key(["chat"], name="validated")
    with served.client(MASTER) as c:
        r = c.patch(f"/v1/admin/keys/{target[:12]}", json=body)
        assert 400 <= r.status_code < 500, r.text
        assert c.get(f"/v1/admin/keys/{target[:12]}").json()["scopes"] == ["chat"]


def test_limits_of_unknown_or_revoked_keys_are_404(served: ServedGateway) -> None:
    target = served.create_key(["chat"], name="gone")
    with served.client(MASTER) as c:
        assert c.delete(f"/v1/admin/keys/{target[:12]}").status_code == 200
        assert c.patch(f"/v1/admin/keys/{target[:12]}", json={"rpm": 1}).status_code == 404
        assert c.patch("/v1/admin/keys/lg_nothing", json={"rpm": 1}).status_code == 404
