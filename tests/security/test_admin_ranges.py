"""Admin API numbers against their column types, on a real ``legato serve`` over
PostgreSQL: a value the column cannot hold is a 400 naming the field (never a 500), the
largest value it can hold is stored, and no SQL parameter ever reaches the log."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from _serve import ServeProcess, serving
from legato.server._keys import INT32_MAX

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

CONFIG = """\
server:
  master_key: env:SECURITY_MASTER_KEY
  key_cache_ttl_s: 0
  drain_timeout_s: 1
"""


@pytest.fixture(scope="module")
def serve(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    tmp = tmp_path_factory.mktemp("ranges")
    (tmp / "legato.yaml").write_text(CONFIG)
    with serving(tmp / "legato.yaml", "--database-url", postgres_url) as process:
        yield process


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tpm", 9_999_999_999),
        ("tpm", INT32_MAX + 1),
        ("rpm", INT32_MAX + 1),
        ("rpm", -1),
        ("tpm", 10**40),
        ("budget_usd", 1e13),
        ("budget_usd", -0.01),
        ("budget_usd", False),
        ("rpm", 2.5),
        ("rpm", "10"),
    ],
)
def test_out_of_range_numbers_are_400_naming_the_field(serve: ServeProcess, field: str, value: object) -> None:
    with serve.client() as c:
        r = c.post("/v1/admin/keys", json={"name": "k", "scopes": ["chat"], field: value})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == field
    assert field in error["message"]


def test_the_largest_values_the_columns_hold_are_stored(serve: ServeProcess) -> None:
    with serve.client() as c:
        body = {"name": "big", "scopes": ["chat"], "rpm": INT32_MAX, "tpm": INT32_MAX, "budget_usd": 1e12}
        r = c.post("/v1/admin/keys", json=body)
        assert r.status_code == 201, r.text
        shown = c.get(f"/v1/admin/keys/{r.json()['id']}").json()
    assert (shown["rpm"], shown["tpm"], shown["budget_usd"]) == (INT32_MAX, INT32_MAX, 1e12)


def test_no_sql_or_parameters_in_the_log(serve: ServeProcess) -> None:
    with serve.client() as c:
        for value in (9_999_999_999, -5, "x"):
            c.post("/v1/admin/keys", json={"name": "k", "scopes": ["chat"], "tpm": value})
    log = serve.log()
    assert "INSERT INTO" not in log
    assert "9999999999" not in log
    assert "parameters:" not in log
