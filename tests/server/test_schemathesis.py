"""Property-based testing of the served OpenAPI spec with schemathesis.

At least 1,000 generated requests over every operation, sent to a real gateway (with
the master key, so requests get past authentication into validation and the
handlers): not one of schemathesis's checks fails (no 5xx, only documented statuses,
bodies that match the documented schemas, and every request the schema allows is
accepted: the published schema says what the gateway really takes), and every 4xx has
a JSON error body.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from legato.server import create_app

from .conftest import MASTER, Running, catalog_for, gateway_settings, serve_in_thread

EXAMPLES_PER_OPERATION = 80
MIN_REQUESTS = 1000


@pytest.fixture(scope="module")
def fuzz_gateway(gateway: Running, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A gateway of its own (no pipelines, no drain wait) so generated keys and runs stay here."""
    tmp = tmp_path_factory.mktemp("fuzz")
    app = create_app(gateway_settings(tmp, drain_timeout_s=0), catalog=catalog_for(gateway.fake))
    with serve_in_thread(app) as url:
        yield url


@pytest.mark.slow
def test_generated_requests(fuzz_gateway: str) -> None:
    schema = schemathesis.openapi.from_url(fuzz_gateway + "/openapi.json")
    headers = {"Authorization": f"Bearer {MASTER}"}
    sent = 0
    problems: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            nonlocal sent
            response = case.call(base_url=fuzz_gateway, headers=headers, timeout=30)
            sent += 1
            where = f"{case.method} {case.formatted_path} -> {response.status_code}"
            try:
                case.validate_response(response)
            except (Exception, BaseExceptionGroup) as exc:  # schemathesis raises its failures grouped
                problems.append(f"{where}: {str(exc)[:3000]}")
            if response.status_code >= 500:
                problems.append(f"{where}: {response.text[:300]}")
            elif response.status_code >= 400:
                try:
                    body = json.loads(response.text)
                except ValueError:
                    problems.append(f"{where}: non-JSON error body {response.text[:100]!r}")
                    return
                if not isinstance(body, dict) or not ("error" in body or body.get("type") == "error"):
                    problems.append(f"{where}: error body without an error object: {response.text[:100]}")

        check()
    assert not problems, "\n\n".join(problems[:40])
    assert sent >= MIN_REQUESTS
