from __future__ import annotations

import anyio
import pytest

from legato.batching import BatchedEmbeddings
from legato.errors import RateLimited
from legato.ledger import Ledger, use_ledger
from legato.providers import EmbedRequest, OpenAIModel, Usage, default_pricing
from legato.testing import FakeProvider, Fault


async def test_concurrent_embed_calls_share_one_upstream_request() -> None:
    texts = [f"document number {i} " + "x" * i for i in range(20)]
    async with FakeProvider(seed=0) as fake:
        inner = OpenAIModel("text-embedding-3-small", base_url=fake.openai_base_url, api_key="sk-test")
        expected = (await inner.embed(EmbedRequest(inputs=texts))).vectors
        fake.clear()
        model = BatchedEmbeddings(inner, max_batch=64, max_wait_ms=50)
        got: dict[int, list[list[float]]] = {}
        ledgers = {i: Ledger(f"step-{i}") for i in range(20)}

        async def one(i: int) -> None:
            with use_ledger(ledgers[i]):
                got[i] = (await model.embed(EmbedRequest(inputs=[texts[i]]))).vectors

        try:
            async with anyio.create_task_group() as tg:
                for i in range(20):
                    tg.start_soon(one, i)
        finally:
            await model.aclose()
        requests = fake.requests_for("openai.embeddings")
    assert len(requests) == 1
    assert model.upstream_calls == 1
    assert [got[i][0] for i in range(20)] == expected  # each caller got the vector of its own text
    # each caller's ledger carries its own share of the one call, and the shares add up
    price = default_pricing().lookup("openai", "text-embedding-3-small")
    assert price is not None
    assert all(ledgers[i].calls == 1 for i in range(20))
    assert ledgers[19].cost > ledgers[0].cost  # the longer text pays more
    total_tokens = sum(ledgers[i].input_tokens for i in range(20))
    assert sum(ledgers[i].cost for i in range(20)) == pytest.approx(
        price.cost(Usage(input_tokens=total_tokens)), rel=0.05
    )


async def test_an_upstream_error_reaches_every_caller_of_the_batch() -> None:
    async with FakeProvider(seed=0) as fake:
        fake.script(Fault.http_error("rate_limit", retry_after=1), api="openai.embeddings")
        inner = OpenAIModel("text-embedding-3-small", base_url=fake.openai_base_url, api_key="sk-test")
        model = BatchedEmbeddings(inner, max_wait_ms=50)
        errors: list[BaseException] = []

        async def one(i: int) -> None:
            try:
                await model.embed(EmbedRequest(inputs=[f"t{i}"]))
            except RateLimited as exc:
                errors.append(exc)

        try:
            async with anyio.create_task_group() as tg:
                for i in range(5):
                    tg.start_soon(one, i)
        finally:
            await model.aclose()
        assert len(fake.requests_for("openai.embeddings")) == 1
    assert len(errors) == 5


async def test_incompatible_requests_are_not_merged_and_opt_out_passes_through() -> None:
    async with FakeProvider(seed=0) as fake:
        inner = OpenAIModel("text-embedding-3-small", base_url=fake.openai_base_url, api_key="sk-test")
        model = BatchedEmbeddings(inner, max_wait_ms=20)
        dims: dict[str, int] = {}

        async def one(label: str, request: EmbedRequest) -> None:
            dims[label] = len((await model.embed(request)).vectors[0])

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(one, "a", EmbedRequest(inputs=["a"], dimensions=8))
                tg.start_soon(one, "b", EmbedRequest(inputs=["b"], dimensions=4))
                tg.start_soon(one, "c", EmbedRequest(inputs=["c"], metadata={"batch": False}))
        finally:
            await model.aclose()
        assert len(fake.requests_for("openai.embeddings")) == 3
    assert dims == {"a": 8, "b": 4, "c": 16}
