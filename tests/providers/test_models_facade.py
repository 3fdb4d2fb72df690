from __future__ import annotations

from pathlib import Path

import pytest

from legato import models
from legato.config import LegatoConfig
from legato.errors import ConfigError, MissingSecret
from legato.providers import AnthropicModel, ChatRequest, Message, OpenAIModel, PythonModel, create
from legato.testing import FakeProvider

YAML = """\
models:
  fast:
    provider: openai
    model: gpt-4o-mini
    api_key: env:LEGATO_TEST_OPENAI_KEY
    base_url: {base}/v1
  careful:
    provider: anthropic
    model: claude-3-5-haiku-latest
    api_key: env:LEGATO_TEST_MISSING_KEY
    base_url: {base}
  local-llm:
    provider: ollama
    model: llama3.1:8b
    base_url: {base}/v1
    price: {{input: 0.0, output: 0.0}}
  echo:
    provider: python
    model: legato.testing._wire:count_tokens
"""


def config(tmp_path: Path, text: str) -> LegatoConfig:
    path = tmp_path / "legato.yaml"
    path.write_text(text)
    return LegatoConfig.load(path)


async def test_named_models_resolve_and_answer(
    tmp_path: Path, fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEGATO_TEST_OPENAI_KEY", "sk-from-env")
    cfg = config(tmp_path, YAML.format(base=fake_provider.base_url))
    assert models.names(cfg) == ["careful", "echo", "fast", "local-llm"]
    fast = models.get("fast", cfg)
    assert isinstance(fast, OpenAIModel)
    assert fast.name == "fast"
    response = await fast.chat(ChatRequest(messages=[Message(role="user", content="hi")]))
    await fast.aclose()
    assert response.text == "hi"
    assert fake_provider.requests[0].headers["authorization"] == "Bearer sk-from-env"
    local = models.get("local-llm", cfg)
    assert isinstance(local, OpenAIModel)
    assert local.provider == "ollama"
    local_response = await local.chat(ChatRequest(messages=[Message(role="user", content="x")]))
    await local.aclose()
    assert local_response.cost == 0.0
    assert isinstance(models.get("echo", cfg), PythonModel)


def test_missing_secret_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEGATO_TEST_MISSING_KEY", raising=False)
    cfg = config(tmp_path, YAML.format(base="http://127.0.0.1:9"))
    with pytest.raises(ConfigError, match="LEGATO_TEST_MISSING_KEY"):
        models.get("careful", cfg)


async def test_an_env_base_url_is_read_from_the_environment(
    tmp_path: Path, fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = "models:\n  private: {provider: openai, model: m, base_url: env:LEGATO_TEST_BASE_URL}\n"
    cfg = config(tmp_path, text)
    monkeypatch.delenv("LEGATO_TEST_BASE_URL", raising=False)
    with pytest.raises(MissingSecret, match="needs the environment variable LEGATO_TEST_BASE_URL"):
        models.get("private", cfg)
    monkeypatch.setenv("LEGATO_TEST_BASE_URL", fake_provider.openai_base_url)
    model = models.get("private", cfg)
    try:
        response = await model.chat(ChatRequest(messages=[Message(role="user", content="hi")]))
    finally:
        await model.aclose()
    assert response.text == "hi"
    assert len(fake_provider.requests) == 1  # the call went to the URL the variable names


def test_literal_secrets_are_refused_in_files(tmp_path: Path) -> None:
    cfg = config(tmp_path, "models:\n  m: {provider: openai, model: gpt-4o, api_key: sk-literal}\n")
    with pytest.raises(ConfigError, match="env:"):
        models.get("m", cfg)


def test_bad_entries_name_the_field_and_line(tmp_path: Path) -> None:
    cfg = config(tmp_path, "models:\n  m:\n    provider: openai\n    modle: gpt-4o\n")
    with pytest.raises(ConfigError, match=r"legato\.yaml:4:\d+: models\.m\.modle"):
        models.get("m", cfg)
    cfg = config(tmp_path, "models:\n  m: {provider: nope, model: x}\n")
    with pytest.raises(ConfigError, match="unknown provider 'nope'"):
        models.get("m", cfg)
    cfg = config(tmp_path, "models:\n  m: {provider: openai, model: x, options: {colour: red}}\n")
    with pytest.raises(ConfigError, match="unknown option"):
        models.get("m", cfg)


def test_unknown_names_list_the_known_ones(tmp_path: Path) -> None:
    cfg = config(tmp_path, YAML.format(base="http://127.0.0.1:9"))
    with pytest.raises(ConfigError, match="known models: careful, echo, fast, local-llm"):
        models.get("nope", cfg)


def test_inline_provider_slash_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant")
    model = models.get("anthropic/claude-haiku-4-5", LegatoConfig())
    assert isinstance(model, AnthropicModel)
    assert model.api_key == "sk-ant"
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        models.get("openai/gpt-4o", LegatoConfig())


def test_resolvers_extend_the_lookup() -> None:
    special = PythonModel(lambda r: "group answer", name="my-group")

    def groups(name: str, config: LegatoConfig) -> PythonModel | None:
        return special if name == "my-group" else None

    def group_names(config: LegatoConfig) -> list[str]:
        return ["my-group"]

    models.add_resolver(groups, names=group_names)
    try:
        assert models.get("my-group", LegatoConfig()) is special
        assert "my-group" in models.names(LegatoConfig())
    finally:
        models._resolvers.remove(groups)
        models._name_sources.remove(group_names)


def test_create_in_code_accepts_a_literal_key() -> None:
    model = create("openai", "gpt-4o-mini", api_key="sk-code", base_url="http://127.0.0.1:9/v1", organization="org-1")
    assert isinstance(model, OpenAIModel)
    assert model.api_key == "sk-code"
    assert model.extra_headers["openai-organization"] == "org-1"
