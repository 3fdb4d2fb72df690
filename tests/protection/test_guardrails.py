"""PII guardrails through the fake provider: what the provider receives, what the caller reads."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from legato.errors import GuardrailBlocked
from legato.guardrails import PIIGuard
from legato.providers import ChatRequest, Message, OpenAIModel
from legato.testing import FakeProvider, Reply

pytest.importorskip("presidio_analyzer")

PROMPT = "Please write to John Smith at john.smith@example.com about the refund."


@pytest.fixture
async def guard(fake_provider: FakeProvider) -> AsyncIterator[Callable[..., PIIGuard]]:
    """Makes PIIGuards around an OpenAI model on the fake provider (closed after the test)."""
    made: list[PIIGuard] = []

    def make(**options: Any) -> PIIGuard:
        inner = OpenAIModel("gpt-4o-mini", base_url=fake_provider.openai_base_url, api_key="sk")
        made.append(PIIGuard(inner, **options))
        return made[-1]

    yield make
    for model in made:
        await model.aclose()


def _ask(text: str = PROMPT) -> ChatRequest:
    return ChatRequest(messages=[Message(role="system", content="Be brief."), Message(role="user", content=text)])


def _sent(fake: FakeProvider) -> str:
    return json.dumps([r.body for r in fake.requests])


async def test_mask_keeps_pii_from_the_provider_and_restores_it_for_the_caller(
    fake_provider: FakeProvider, guard: Callable[..., PIIGuard]
) -> None:
    fake_provider.script(Reply(text=None))  # echoes what it was sent
    model = guard(mode="mask")
    answer = await model.chat(_ask())
    sent = _sent(fake_provider)
    assert "john.smith@example.com" not in sent
    assert "John Smith" not in sent
    assert "<EMAIL_ADDRESS_1>" in sent
    assert "<PERSON_1>" in sent
    assert answer.text == PROMPT


async def test_mask_restores_placeholders_split_across_stream_chunks(
    fake_provider: FakeProvider, guard: Callable[..., PIIGuard]
) -> None:
    fake_provider.script(Reply(text=None, chunk_chars=3))
    model = guard(mode="mask")
    text = "".join([c.text async for c in model.stream(_ask())])
    assert text == PROMPT
    assert "john.smith@example.com" not in _sent(fake_provider)


async def test_redact_sends_entity_types_and_restores_nothing(
    fake_provider: FakeProvider, guard: Callable[..., PIIGuard]
) -> None:
    fake_provider.script(Reply(text=None))
    model = guard(mode="redact", entities=["EMAIL_ADDRESS"])
    answer = await model.chat(_ask())
    assert answer.text == "Please write to John Smith at <EMAIL_ADDRESS> about the refund."
    assert "john.smith@example.com" not in _sent(fake_provider)


async def test_block_refuses_before_any_provider_call_and_names_only_entity_types(
    fake_provider: FakeProvider, guard: Callable[..., PIIGuard]
) -> None:
    model = guard(mode="block")
    with pytest.raises(GuardrailBlocked) as info:
        await model.chat(_ask())
    assert "EMAIL_ADDRESS" in info.value.entities
    assert "john.smith" not in str(info.value)
    assert fake_provider.requests == []


async def test_allowed_values_and_clean_prompts_pass_untouched(
    fake_provider: FakeProvider, guard: Callable[..., PIIGuard]
) -> None:
    fake_provider.script(Reply(text=None), Reply(text=None))
    model = guard(mode="block", entities=["EMAIL_ADDRESS"], allow=["support@example.com"])
    assert (await model.chat(_ask("Write to support@example.com"))).text == "Write to support@example.com"
    assert (await model.chat(_ask("What is two plus two?"))).text == "What is two plus two?"


async def test_answers_are_checked_when_asked(fake_provider: FakeProvider, guard: Callable[..., PIIGuard]) -> None:
    fake_provider.script(Reply(text="Call Jane at jane@example.org"))
    model = guard(mode="block", on="response", entities=["EMAIL_ADDRESS"])
    with pytest.raises(GuardrailBlocked, match="response contains personal data"):
        await model.chat(_ask("Who do I call?"))


async def test_a_model_in_legato_yaml_names_its_guardrail(fake_provider: FakeProvider) -> None:
    from legato.config import LegatoConfig
    from legato.errors import ConfigError
    from legato.models import get

    entry = {"provider": "openai", "model": "gpt-4o-mini", "base_url": fake_provider.openai_base_url}
    config = LegatoConfig({"models": {"guarded": {**entry, "api_key": "env:PATH", "guardrail": "pii-block"}}})
    model = get("guarded", config)
    try:
        with pytest.raises(GuardrailBlocked):
            await model.chat(_ask())
        assert fake_provider.requests == []
    finally:
        await model.aclose()
    typo = LegatoConfig({"models": {"typo": {**entry, "api_key": "env:PATH", "guardrail": "pii-blok"}}})
    with pytest.raises(ConfigError, match=r"models\.typo: unknown guardrail 'pii-blok'"):
        get("typo", typo)


GUARDED_STEP = """\
name: guarded
inputs:
  ticket: {{type: string}}
steps:
  reply:
    llm: fast
    prompt: "${{inputs.ticket}}"
    guardrail: {guardrail}
outputs:
  reply: ${{steps.reply.text}}
"""


async def test_an_llm_step_names_its_guardrail(tmp_path: Path, fake_provider: FakeProvider) -> None:
    from legato.config import LegatoConfig
    from legato.errors import SpecError
    from legato.spec import load_pipeline

    path = tmp_path / "legato.yaml"
    base = f"{fake_provider.base_url}/v1"
    path.write_text(f"models:\n  fast: {{provider: openai, model: gpt-4o-mini, base_url: '{base}'}}\n")
    config = LegatoConfig.load(path)
    fake_provider.script(Reply(text=None))
    pipeline = load_pipeline(GUARDED_STEP.format(guardrail="pii-mask"), config=config)
    result = await pipeline.run(ticket=PROMPT)
    result.raise_for_status()
    assert result.result == {"reply": PROMPT}
    assert "john.smith@example.com" not in _sent(fake_provider)
    with pytest.raises(SpecError, match="unknown guardrail 'pii-mast'"):
        load_pipeline(GUARDED_STEP.format(guardrail="pii-mast"), config=config)
