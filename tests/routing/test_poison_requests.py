"""A request that cannot be sent is the caller's fault, in pipelines as in the gateway:
the adapters refuse text that is not valid Unicode (and NaN) as ``BadRequest`` before
sending anything, so a router counts nothing against its deployments."""

from __future__ import annotations

import pytest

from legato.errors import BadRequest
from legato.providers import ChatRequest, EmbedRequest, Message, create
from legato.routing import Router
from legato.testing import FakeProvider


@pytest.mark.parametrize(
    "request_",
    [
        ChatRequest(messages=[Message(role="user", content="bad \ud800 text")]),
        ChatRequest(messages=[Message(role="user", content="hi")], stop=["\udfff"]),
    ],
)
async def test_unencodable_chat_is_bad_request_and_counts_against_no_deployment(request_: ChatRequest) -> None:
    async with FakeProvider(seed=0) as fake:
        models = [create("openai", f"gpt-{i}", api_key="sk-x", base_url=fake.openai_base_url) for i in "ab"]
        router = Router("poison", models)
        try:
            for _ in range(20):
                with pytest.raises(BadRequest, match=r"lone surrogate U\+D[8F]"):
                    await router.chat(request_)
            with pytest.raises(BadRequest):
                async for _chunk in router.stream(request_):
                    pass
            assert fake.requests == []  # nothing was sent
            for health in router.health():
                assert health.state == "healthy"
                assert (health.failures, health.consecutive_failures, health.last_error) == (0, 0, None)
            ok = await router.chat(ChatRequest(messages=[Message(role="user", content="fine")]))
            assert ok.message.text
        finally:
            await router.aclose()


async def test_unencodable_embedding_input_is_bad_request() -> None:
    async with FakeProvider(seed=0) as fake:
        model = create("openai", "text-embedding-fake", api_key="sk-x", base_url=fake.openai_base_url)
        try:
            with pytest.raises(BadRequest, match="not valid Unicode"):
                await model.embed(EmbedRequest(inputs=["\udc80"]))
            assert fake.requests == []
        finally:
            await model.aclose()


async def test_nan_in_tool_parameters_is_bad_request() -> None:
    from legato.providers import Tool

    async with FakeProvider(seed=0) as fake:
        model = create("openai", "gpt-fake", api_key="sk-x", base_url=fake.openai_base_url)
        request = ChatRequest(
            messages=[Message(role="user", content="hi")],
            tools=[Tool(name="f", parameters={"type": "object", "properties": {}, "x-limit": float("nan")})],
        )
        try:
            with pytest.raises(BadRequest, match="NaN or infinity"):
                await model.chat(request)
            assert fake.requests == []
        finally:
            await model.aclose()
