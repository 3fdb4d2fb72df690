"""The gateway serving legato.yaml: named models, routing groups with fallbacks, the
response cache and the daily budget, all behind the OpenAI and Anthropic routes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from legato.config import LegatoConfig
from legato.server import create_app
from legato.testing import FakeProvider, Fault, Reply

from .conftest import Running, gateway_settings, serve_in_thread


def config(fake: FakeProvider, tmp: Path) -> LegatoConfig:
    data = {
        "models": {
            "primary": {
                "provider": "openai",
                "model": "gpt-primary",
                "base_url": fake.openai_base_url,
                "api_key": "env:LEGATO_TEST_FAKE_KEY",
                "price": {"input": 1000, "output": 1000},
            },
            "backup": {
                "provider": "anthropic",
                "model": "claude-backup",
                "base_url": fake.anthropic_base_url,
                "api_key": "env:LEGATO_TEST_FAKE_KEY",
                "price": {"input": 1000, "output": 1000},
            },
        },
        "groups": {
            "assistant": {
                "deployments": [{"model": "primary"}],
                "fallbacks": {"on_failure": ["backup"]},
                "retry": False,
            }
        },
        "cache": {"backend": "memory"},
        "budgets": {"per_day_usd": 0.05},
    }
    return LegatoConfig(data, source=str(tmp / "legato.yaml"))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    mp = pytest.MonkeyPatch()
    mp.setenv("LEGATO_TEST_FAKE_KEY", "sk-fake")
    tmp = tmp_path_factory.mktemp("configured")
    with FakeProvider(seed=0).in_thread() as fake:
        app = create_app(gateway_settings(tmp), config=config(fake, tmp))
        with serve_in_thread(app) as url:
            yield Running(url, app, fake)
    mp.undo()


def chat(running: Running, key: str, text: str, model: str = "assistant") -> tuple[int, dict[str, object]]:
    with running.client(key) as c:
        body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 5}
        r = c.post("/v1/chat/completions", json=body)
    return r.status_code, r.json()


def test_configured_names_only(served: Running) -> None:
    key = served.create_key(["chat"])
    with served.client(key) as c:
        assert [m["id"] for m in c.get("/v1/models").json()["data"]] == ["assistant", "backup", "primary"]
    assert chat(served, key, "x", model="openai/gpt-4o")[0] == 404  # no inline provider/model through the gateway
    with served.client() as c:
        assert c.get("/readyz").json()["checks"]["models"] == {"assistant": True, "backup": True, "primary": True}


def test_group_falls_back_and_cache_answers_repeats(served: Running) -> None:
    key = served.create_key(["chat"])
    served.fake.script(Fault.server_error(), api="openai")
    served.fake.script(Reply(text="from the backup"), api="anthropic")
    status, body = chat(served, key, "question one")
    assert status == 200, body
    assert body["choices"][0]["message"]["content"] == "from the backup"  # type: ignore[index]
    assert [r.api for r in served.fake.requests] == ["openai.chat", "anthropic.messages"]
    # The same request again: answered by the response cache, no provider call.
    status, again = chat(served, key, "question one")
    assert status == 200
    assert again["choices"][0]["message"]["content"] == "from the backup"  # type: ignore[index]
    assert len(served.fake.requests) == 2


def test_daily_budget_of_the_budgets_section(served: Running) -> None:
    """$1,000 per 1M tokens: each call costs about a cent of the $0.05 day (the guard
    reserves an estimate first, so it refuses before the day is quite spent)."""
    key = served.create_key(["chat"])
    codes = [chat(served, key, f"distinct question number {i}")[0] for i in range(8)]
    assert codes[0] == 200
    assert 429 in codes
    refused = chat(served, key, "one more distinct question")[1]
    assert refused["error"]["code"] == "budget_exceeded"  # type: ignore[index]
