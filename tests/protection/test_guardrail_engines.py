"""Detection engines: patterns only (no language model), NER, and guardrails on groups."""

from __future__ import annotations

import json

import pytest

from legato.config import LegatoConfig
from legato.errors import ConfigError, GuardrailBlocked
from legato.guardrails import DetectionEngine, PIIGuard, names
from legato.guardrails._presidio import analyze, detector
from legato.providers import ChatRequest, Message, OpenAIModel
from legato.testing import FakeProvider, Reply

pytest.importorskip("presidio_analyzer")

CONTACT = (
    "Reach Maria Lopez at maria.lopez@example.org, phone (212) 555-0143, card 4111 1111 1111 1111, "
    "IBAN DE89370400440532013000, from 192.168.1.20."
)


def _found(text: str, engine: str) -> dict[str, str]:
    return {f.entity: text[f.start : f.end] for f in analyze(text, engine=engine)}


def test_the_patterns_engine_finds_contact_data_without_a_language_model() -> None:
    found = _found(CONTACT, "patterns")
    assert found == {
        "EMAIL_ADDRESS": "maria.lopez@example.org",
        "PHONE_NUMBER": "(212) 555-0143",
        "CREDIT_CARD": "4111 1111 1111 1111",
        "IBAN_CODE": "DE89370400440532013000",
        "IP_ADDRESS": "192.168.1.20",
    }
    assert detector("patterns")._nlp is None


def test_the_ner_engine_adds_names_from_spacy_loaded_with_only_what_ner_needs() -> None:
    found = _found(CONTACT, "ner")
    assert found["PERSON"] == "Maria Lopez"
    assert found["EMAIL_ADDRESS"] == "maria.lopez@example.org"
    assert detector("ner")._nlp.pipe_names == ["tok2vec", "ner"]


def test_a_phone_number_needs_context_or_a_valid_number() -> None:
    assert _found("Ticket 2125550143 was closed.", "patterns") == {}  # a bare number: score 0.4 < 0.5
    assert _found("Call my mobile 2125550143 today.", "patterns") == {"PHONE_NUMBER": "2125550143"}
    assert _found("My phone is 1234567.", "patterns") == {}  # not a valid number anywhere


def test_configured_entities_limit_what_is_reported() -> None:
    found = detector("ner").analyze([CONTACT], ["EMAIL_ADDRESS"], [], 0.5)[0]
    assert [f.entity for f in found] == ["EMAIL_ADDRESS"]


def test_the_patterns_engine_refuses_entities_only_ner_finds() -> None:
    with pytest.raises(ConfigError, match="cannot detect PERSON: names, locations"):
        PIIGuard(OpenAIModel("gpt-4o-mini", api_key="sk"), engine="patterns", entities=["PERSON", "EMAIL_ADDRESS"])
    with pytest.raises(ConfigError, match="cannot detect NOT_AN_ENTITY"):
        detector("patterns").check(["NOT_AN_ENTITY"])


async def test_every_text_of_a_request_is_masked_with_one_set_of_placeholders(fake_provider: FakeProvider) -> None:
    fake_provider.script(Reply(text=None))
    inner = OpenAIModel("gpt-4o-mini", base_url=fake_provider.openai_base_url, api_key="sk")
    model = PIIGuard(inner, engine=DetectionEngine.PATTERNS)
    try:
        request = ChatRequest(
            messages=[
                Message(role="system", content="The customer is maria.lopez@example.org."),
                Message(role="user", content="Write to maria.lopez@example.org and copy ops@example.com."),
            ]
        )
        answer = await model.chat(request)
    finally:
        await model.aclose()
    sent = json.dumps([r.body for r in fake_provider.requests])
    assert "example.org" not in sent
    assert "example.com" not in sent
    assert sent.count("<EMAIL_ADDRESS_1>") == 2
    assert "<EMAIL_ADDRESS_2>" in sent
    assert answer.text == "Write to maria.lopez@example.org and copy ops@example.com."


def test_pattern_guardrails_are_registered_by_name() -> None:
    assert {"pii-mask-patterns", "pii-redact-patterns", "pii-block-patterns"} <= set(names())


async def test_a_group_takes_a_guardrail_before_any_deployment_is_called(fake_provider: FakeProvider) -> None:
    from legato.models import get
    from legato.routing import aclose_shared_groups

    entry = {"provider": "openai", "model": "gpt-4o-mini", "base_url": fake_provider.openai_base_url}
    config = LegatoConfig(
        {
            "models": {"a": {**entry, "api_key": "env:PATH"}},
            "groups": {
                "support": {"deployments": [{"model": "a"}], "guardrail": "pii-block-patterns"},
                "front": {"deployments": [{"model": "support"}]},
            },
        }
    )
    ask = ChatRequest(messages=[Message(role="user", content="Mail maria.lopez@example.org now")])
    try:
        for name in ("support", "front"):  # a group that refers to the guarded group goes through its guard
            with pytest.raises(GuardrailBlocked, match="EMAIL_ADDRESS"):
                await get(name, config).chat(ask)
        assert fake_provider.requests == []
        fake_provider.script(Reply(text="fine"))
        assert (await get("support", config).chat(ChatRequest(messages=[Message(role="user", content="hi")]))).text
    finally:
        await aclose_shared_groups()
    typo = LegatoConfig(
        {"models": config.raw("models"), "groups": {"g": {"deployments": [{"model": "a"}], "guardrail": "pii-nope"}}}
    )
    with pytest.raises(ConfigError, match=r"groups\.g\.guardrail: unknown guardrail 'pii-nope'"):
        get("g", typo)
