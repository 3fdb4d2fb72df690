"""Every injected error, through every HTTP adapter, becomes the right legato error."""

from __future__ import annotations

import pytest

from legato import errors
from legato.providers import AnthropicModel, ChatRequest, Message, OpenAIModel, TGIModel
from legato.testing import ERROR_KINDS, FakeProvider, Fault

pytestmark = pytest.mark.usefixtures("each_wire")  # the lean wire and the aiohttp wire alike

REQ = ChatRequest(messages=[Message(role="user", content="hi")])

EXPECTED: dict[str, dict[str, type[errors.ModelError]]] = {
    "openai": {
        "bad_request": errors.BadRequest,
        "auth": errors.AuthenticationFailed,
        "permission": errors.PermissionDenied,
        "not_found": errors.ModelNotFound,
        "rate_limit": errors.RateLimited,
        "quota": errors.QuotaExhausted,
        "context_length": errors.ContextWindowExceeded,
        "content_filter": errors.ContentFiltered,
        "server": errors.ServerError,
        "overloaded": errors.Overloaded,
    },
    "anthropic": {
        "bad_request": errors.BadRequest,
        "auth": errors.AuthenticationFailed,
        "permission": errors.PermissionDenied,
        "not_found": errors.ModelNotFound,
        "rate_limit": errors.RateLimited,
        "quota": errors.QuotaExhausted,
        "context_length": errors.ContextWindowExceeded,
        "content_filter": errors.ContentFiltered,
        "server": errors.ServerError,
        "overloaded": errors.Overloaded,
    },
    "huggingface": {
        "bad_request": errors.BadRequest,
        "auth": errors.AuthenticationFailed,
        "permission": errors.PermissionDenied,
        "not_found": errors.ModelNotFound,
        "rate_limit": errors.Overloaded,
        "quota": errors.QuotaExhausted,
        "context_length": errors.ContextWindowExceeded,
        "content_filter": errors.BadRequest,
        "server": errors.ServerError,
        "overloaded": errors.Overloaded,
    },
}


def adapters(fake: FakeProvider) -> list[OpenAIModel | AnthropicModel | TGIModel]:
    return [
        OpenAIModel("gpt-4o-mini", base_url=fake.openai_base_url, api_key="sk"),
        AnthropicModel("claude-3-5-haiku-latest", base_url=fake.anthropic_base_url, api_key="sk"),
        TGIModel(base_url=fake.base_url),
    ]


@pytest.mark.parametrize("kind", ERROR_KINDS)
async def test_status_errors_translate_per_provider(fake_provider: FakeProvider, kind: str) -> None:
    for model in adapters(fake_provider):
        fake_provider.script(Fault.http_error(kind, retry_after=4))
        with pytest.raises(errors.ModelError) as info:
            await model.chat(REQ)
        err = info.value
        assert type(err) is EXPECTED[model.provider][kind], (model.provider, kind, err)
        assert err.provider == model.provider
        assert str(err.status) == fake_provider.requests[-1].outcome
        assert err.retry_after == 4
        assert err.request_id == fake_provider.requests[-1].request_id
        await model.aclose()


async def test_retryable_flags_follow_the_class(fake_provider: FakeProvider) -> None:
    model = OpenAIModel("gpt-4o-mini", base_url=fake_provider.openai_base_url, api_key="sk")
    seen = {}
    for kind in ("rate_limit", "quota", "server", "context_length"):
        fake_provider.script(Fault.http_error(kind))
        with pytest.raises(errors.ModelError) as info:
            await model.chat(REQ)
        seen[kind] = info.value.retryable
    await model.aclose()
    assert seen == {"rate_limit": True, "quota": False, "server": True, "context_length": False}


async def test_retry_after_ms_and_reset_headers(fake_provider: FakeProvider) -> None:
    model = OpenAIModel("gpt-4o-mini", base_url=fake_provider.openai_base_url, api_key="sk")
    fake_provider.script(Fault.rate_limited(retry_after=None, retry_after_ms=250))
    fake_provider.script(Fault.http_error("rate_limit", headers={"x-ratelimit-reset-requests": "1m30s"}))
    waits = []
    for _ in range(2):
        with pytest.raises(errors.RateLimited) as info:
            await model.chat(REQ)
        waits.append(info.value.retry_after)
    await model.aclose()
    assert waits == [0.25, 90.0]


async def test_hf_model_loading_is_overloaded_with_estimated_time(fake_provider: FakeProvider) -> None:
    from legato.providers import EmbedRequest, HuggingFaceModel

    fake_provider.script(Fault.overloaded(retry_after=12.5))
    model = HuggingFaceModel("org/model", base_url=fake_provider.hf_base_url)
    with pytest.raises(errors.Overloaded) as info:
        await model.embed(EmbedRequest(inputs=["x"]))
    await model.aclose()
    assert info.value.retry_after == 12.5
    assert info.value.status == 503


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault.reset(), errors.ConnectionFailed),
        (Fault.disconnect(), errors.ConnectionFailed),
        (Fault.malformed(), errors.MalformedResponse),
        (Fault.raw(502, "<html>bad gateway</html>"), errors.ServerError),
        (Fault.raw(418, "I'm a teapot"), errors.BadRequest),
    ],
)
async def test_transport_faults_never_leak_httpx(
    fake_provider: FakeProvider, fault: Fault, error: type[errors.ModelError]
) -> None:
    for model in adapters(fake_provider):
        fake_provider.script(fault)
        with pytest.raises(errors.ModelError) as info:
            await model.chat(REQ)
        assert type(info.value) is error, (model.provider, info.value)
        await model.aclose()


async def test_timeouts_are_provider_timeouts(fake_provider: FakeProvider) -> None:
    from legato.providers import HttpOptions
    from legato.testing import Reply

    fake_provider.script(Reply(text="late", delay=2.0))
    model = OpenAIModel("gpt-4o-mini", base_url=fake_provider.openai_base_url, options=HttpOptions(read_timeout=0.05))
    with pytest.raises(errors.ProviderTimeout) as info:
        await model.chat(REQ)
    await model.aclose()
    assert info.value.retryable


async def test_connection_refused_is_connection_failed() -> None:
    async with FakeProvider() as fake:
        url = fake.openai_base_url
    model = OpenAIModel("gpt-4o-mini", base_url=url)
    with pytest.raises(errors.ConnectionFailed):
        await model.chat(REQ)
    await model.aclose()


async def test_slow_first_byte_of_a_stream_is_a_provider_timeout(fake_provider: FakeProvider) -> None:
    from legato.providers import HttpOptions
    from legato.testing import Reply

    fake_provider.script(Reply(text="late", first_chunk_delay=2.0))
    model = AnthropicModel(
        "claude-3-5-haiku-latest", base_url=fake_provider.anthropic_base_url, options=HttpOptions(read_timeout=0.05)
    )
    with pytest.raises(errors.ProviderTimeout):
        async for _ in model.stream(REQ):
            pass
    await model.aclose()


async def test_http2_option_talks_to_an_http1_server(fake_provider: FakeProvider) -> None:
    from legato.providers import HttpOptions

    model = OpenAIModel("gpt-4o-mini", base_url=fake_provider.openai_base_url, options=HttpOptions(http2=True))
    response = await model.chat(REQ)
    await model.aclose()
    assert response.text == "hi"


async def test_bad_addresses_never_leak_client_exceptions() -> None:
    out_of_range = OpenAIModel("gpt-4o-mini", base_url="http://127.0.0.1:99999/v1")
    wrong_scheme = AnthropicModel("claude-3-5-haiku-latest", base_url="ftp://127.0.0.1:1")
    with pytest.raises(errors.ConnectionFailed):
        await out_of_range.chat(REQ)
    with pytest.raises(errors.ConnectionFailed):
        async for _ in out_of_range.stream(REQ):
            pass
    with pytest.raises(errors.BadRequest, match="invalid URL"):
        await wrong_scheme.chat(REQ)
    await out_of_range.aclose()
    await wrong_scheme.aclose()
