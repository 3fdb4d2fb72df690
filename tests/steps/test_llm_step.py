"""The ``llm:`` YAML step kind against the fake provider."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

from legato.config import LegatoConfig
from legato.errors import SpecError
from legato.providers import Model, ModelConfig, ModelWrapper, create, register_provider
from legato.spec import load_pipeline
from legato.testing import FakeProvider, Reply
from legato.testing.pytest_plugin import fake_provider

__all__ = ["fake_provider"]

PIPELINE = """\
name: llm_demo
inputs:
  topic: {type: string}
steps:
  draft:
    llm: fast
    system: You are terse.
    prompt: "Write about ${inputs.topic}"
    max_tokens: 50
  verdict:
    llm: fast
    prompt: "Judge: ${steps.draft.text}"
    schema:
      type: object
      properties: {ok: {type: boolean}, score: {type: integer}}
      required: [ok]
outputs:
  draft: ${steps.draft.text}
  verdict: ${steps.verdict}
"""


def config(tmp_path: Path, base: str) -> LegatoConfig:
    path = tmp_path / "legato.yaml"
    path.write_text(f"models:\n  fast: {{provider: openai, model: gpt-4o-mini, base_url: '{base}/v1'}}\n")
    return LegatoConfig.load(path)


async def test_llm_steps_chain_and_parse_json(tmp_path: Path, fake_provider: FakeProvider) -> None:
    fake_provider.script(Reply(text="Rivers flow."), Reply(text='```json\n{"ok": true, "score": 7}\n```'))
    pipeline = load_pipeline(PIPELINE, config=config(tmp_path, fake_provider.base_url))
    result = await pipeline.run(topic="rivers")
    result.raise_for_status()
    assert result.result == {"draft": "Rivers flow.", "verdict": {"ok": True, "score": 7}}
    first, second = fake_provider.requests
    assert first.body["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Write about rivers"},
    ]
    assert first.body["max_tokens"] == 50
    assert second.body["messages"][-1]["content"] == "Judge: Rivers flow."
    assert second.body["response_format"]["json_schema"]["schema"]["required"] == ["ok"]
    assert result.usage["calls"] == 2
    assert result.cost > 0
    assert result.outputs["draft"]["model"] == "gpt-4o-mini"


async def test_answer_violating_the_schema_fails_the_step(tmp_path: Path, fake_provider: FakeProvider) -> None:
    fake_provider.script(Reply(text="draft"), Reply(text='{"score": "high"}'))
    pipeline = load_pipeline(PIPELINE, config=config(tmp_path, fake_provider.base_url))
    result = await pipeline.run(topic="x")
    assert result.failed_step == "verdict"
    assert "MalformedResponse" in (result.error or "")
    assert "does not match the schema" in (result.error or "")


def test_spec_errors_name_the_line(tmp_path: Path) -> None:
    cfg = config(tmp_path, "http://127.0.0.1:9")
    unknown_model = PIPELINE.replace("llm: fast\n    system", "llm: nope\n    system")
    with pytest.raises(SpecError, match=r":6:\d+: .*unknown model 'nope'"):
        load_pipeline(unknown_model, config=cfg)
    bad_schema = PIPELINE.replace("type: object", "type: 12")
    with pytest.raises(SpecError, match="not a valid JSON schema"):
        load_pipeline(bad_schema, config=cfg)
    typo = PIPELINE.replace("max_tokens: 50", "max_tokns: 50")
    with pytest.raises(SpecError, match="max_tokns"):
        load_pipeline(typo, config=cfg)


CACHED = """\
name: cached_llm
steps:
  a:
    llm: cached-fast
    prompt: "Same question"
  b:
    llm: cached-fast
    prompt: "Same question"
    depends_on: [a]
    response_cache: {flag}
outputs:
  a: ${{steps.a.text}}
  b: ${{steps.b.text}}
"""


@pytest.mark.parametrize(
    ("flag", "upstream_calls", "b_text"),
    [("true", 1, "first"), ("false", 2, "second"), ("refresh", 2, "second")],
)
async def test_response_cache_option_decides_per_step(
    tmp_path: Path,
    fake_provider: FakeProvider,
    monkeypatch: pytest.MonkeyPatch,
    flag: str,
    upstream_calls: int,
    b_text: str,
) -> None:
    from legato import models
    from legato.cache import MemoryBackend, ResponseCache
    from legato.providers import OpenAIModel

    backend = MemoryBackend()

    def cached(name: str, _: LegatoConfig) -> Model | None:
        if name != "cached-fast":
            return None
        return ResponseCache(OpenAIModel("gpt-4o-mini", base_url=fake_provider.openai_base_url), backend)

    monkeypatch.setattr(models, "_resolvers", [cached, *models._resolvers])
    fake_provider.script(Reply(text="first"), Reply(text="second"))
    pipeline = load_pipeline(CACHED.format(flag=flag), config=config(tmp_path, fake_provider.base_url))
    result = await pipeline.run()
    result.raise_for_status()
    assert result.result == {"a": "first", "b": b_text}
    assert len(fake_provider.requests) == upstream_calls
    if flag == "refresh":  # the fresh answer was stored: a third call is served from the cache
        again = load_pipeline(CACHED.format(flag="true"), config=config(tmp_path, fake_provider.base_url))
        rerun = await again.run()
        assert rerun.result == {"a": "second", "b": "second"}
        assert len(fake_provider.requests) == 2


def test_response_cache_option_is_checked(tmp_path: Path) -> None:
    cfg = config(tmp_path, "http://127.0.0.1:9")
    bad = PIPELINE.replace("max_tokens: 50", "max_tokens: 50\n    response_cache: sometimes")
    with pytest.raises(SpecError, match="response_cache"):
        load_pipeline(bad, config=cfg)


FALLBACK = """\
name: fallback_demo
steps:
  ask:
    llm: assistant
    prompt: "Summarise the outage report"
"""


def fallback_config(tmp_path: Path, base: str) -> LegatoConfig:
    path = tmp_path / "legato.yaml"
    path.write_text(
        "models:\n"
        f"  primary: {{provider: openai, model: gpt-primary, base_url: '{base}/v1'}}\n"
        f"  backup: {{provider: openai, model: gpt-backup, base_url: '{base}/v1'}}\n"
        "groups:\n"
        "  assistant: {deployments: [{model: primary}], fallbacks: {on_failure: [backup]}, retry: false}\n"
    )
    return LegatoConfig.load(path)


async def test_each_model_call_is_reported_with_its_route(tmp_path: Path, fake_provider: FakeProvider) -> None:
    """The step's call says which deployment failed with what, which answered, and what was said."""
    from legato.engine import ModelCalled
    from legato.routing import aclose_shared_groups
    from legato.testing import Fault

    fake_provider.inject(Fault.server_error(), model="gpt-primary")
    fake_provider.script(Reply(text="Two regions were down for an hour."), model="gpt-backup")
    events: list[object] = []
    pipeline = load_pipeline(FALLBACK, config=fallback_config(tmp_path, fake_provider.base_url))
    try:
        result = await pipeline.run(subscribers=[events.append])
    finally:
        await aclose_shared_groups()  # the loop's owner closes the pools its groups opened
    result.raise_for_status()
    [called] = [e for e in events if isinstance(e, ModelCalled)]
    call = called.call
    assert (called.step, called.attempt, called.index) == ("ask", 1, None)
    assert (call["model"], call["status"], call["deployment"]) == ("assistant", "ok", "gpt-backup")
    assert [(p["failed"], p["target"], p["error"], p["kind"]) for p in call["path"]] == [
        ("primary", "next deployment", "ServerError", "deployment"),
        ("assistant", "backup", "ServerError", "group"),
    ]
    assert call["prompt"] == "user: Summarise the outage report"
    assert call["answer"] == "Two regions were down for an hour."
    assert call["latency_s"] > 0
    assert call["output_tokens"] > 0
    assert call["ttft_s"] is None  # not streamed


class _Counted(ModelWrapper):
    """The real OpenAI adapter, counting how often a step's model is built and closed."""

    log: ClassVar[list[str]] = []

    def __init__(self, inner: Model) -> None:
        super().__init__(inner)
        self.log.append("built")

    async def aclose(self) -> None:
        self.log.append("closed")
        await super().aclose()


def _counted(cfg: ModelConfig, name: str) -> Model:
    return _Counted(create("openai", cfg.model, base_url=cfg.base_url, api_key="sk-test"))


SHARED = """\
name: shared_model
steps:
  each:
    llm: counted
    map: prompt
    prompt: ["one", "two", "three", "four", "five"]
  summary:
    llm: counted
    prompt: "sum of ${steps.each}"
"""


async def test_a_run_builds_each_model_once_and_closes_it_when_it_ends(
    tmp_path: Path, fake_provider: FakeProvider
) -> None:
    register_provider("counted-openai", _counted)
    path = tmp_path / "legato.yaml"
    model = f"{{provider: counted-openai, model: m, base_url: '{fake_provider.base_url}/v1'}}"
    path.write_text(f"models:\n  counted: {model}\n")
    pipeline = load_pipeline(SHARED, config=LegatoConfig.load(path))
    _Counted.log.clear()
    seen: list[list[str]] = []
    pipeline.add_step(lambda summary: seen.append(list(_Counted.log)), name="after")
    first = await pipeline.run()
    first.raise_for_status()
    assert len(fake_provider.requests) == 6  # five map items and the summary
    assert seen == [["built"]]  # one model for six calls, open while the run went on
    assert _Counted.log == ["built", "closed"]  # closed when the run ended
    second = await pipeline.run()
    second.raise_for_status()
    assert _Counted.log == ["built", "closed"] * 2  # each run owns its own
