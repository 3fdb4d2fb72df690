"""``Recorded``: one report per model call, streamed or not, with what the call did."""

from __future__ import annotations

import pytest

from legato.errors import BadRequest
from legato.observe import ModelCall, Recorded
from legato.observe._propagation import extract_context
from legato.providers import ChatRequest, Message, OpenAIModel
from legato.testing import FakeProvider, Fault, Reply
from legato.testing.pytest_plugin import fake_provider

__all__ = ["fake_provider"]

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def _request(text: str = "Name a colour") -> ChatRequest:
    return ChatRequest(messages=[Message(role="system", content="Be brief."), Message(role="user", content=text)])


async def test_a_stream_reports_time_to_first_text_and_the_whole_answer(fake_provider: FakeProvider) -> None:
    fake_provider.script(Reply(text="Blue, mostly."))
    calls: list[ModelCall] = []
    model = Recorded(OpenAIModel("gpt-x", base_url=fake_provider.openai_base_url, api_key="sk-test"), calls.append)
    text = "".join([c.text async for c in model.stream(_request())])
    await model.aclose()
    [call] = calls
    assert call.answer == text == "Blue, mostly."
    assert call.prompt == "system: Be brief.\nuser: Name a colour"
    assert call.status == "ok"
    assert call.ttft_s is not None
    assert 0 < call.ttft_s <= call.latency_s
    assert (call.deployment, call.provider) == ("gpt-x", "openai")
    assert call.output_tokens > 0


async def test_a_failed_call_is_reported_with_its_error_class(fake_provider: FakeProvider) -> None:
    fake_provider.script(Fault.http_error("bad_request"))
    calls: list[ModelCall] = []
    model = Recorded(OpenAIModel("gpt-x", base_url=fake_provider.openai_base_url, api_key="sk-test"), calls.append)
    with pytest.raises(BadRequest):
        await model.chat(_request())
    await model.aclose()
    assert calls[0].status == "BadRequest"
    assert calls[0].error
    assert calls[0].answer == ""


async def test_the_trace_id_is_the_current_contexts(fake_provider: FakeProvider) -> None:
    from opentelemetry import context

    fake_provider.script(Reply(text="ok"))
    calls: list[ModelCall] = []

    async def sink(call: ModelCall) -> None:  # an async sink is awaited
        calls.append(call)

    model = Recorded(OpenAIModel("gpt-x", base_url=fake_provider.openai_base_url, api_key="sk-test"), sink)
    parent = extract_context({"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"})
    assert parent is not None
    token = context.attach(parent)
    try:
        await model.chat(_request())
    finally:
        context.detach(token)
    await model.chat(_request())
    await model.aclose()
    assert [c.trace_id for c in calls] == [TRACE, None]
