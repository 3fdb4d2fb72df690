"""Tokens streamed out of a run: ``Pipeline.stream`` yields typed events, model
text included, from ``llm:`` steps calling the fake provider over real HTTP."""

from __future__ import annotations

import contextlib
from pathlib import Path

import anyio

from legato.config import LegatoConfig
from legato.engine import (
    Event,
    Pipeline,
    RunFinished,
    RunStarted,
    StepFinished,
    StepToken,
    stream_tokens,
    token_sink,
)
from legato.spec import load_pipeline
from legato.testing import FakeProvider, Reply
from legato.testing.pytest_plugin import fake_provider

__all__ = ["fake_provider"]

TWO_MODELS = """\
name: two
inputs:
  topic: string
steps:
  poem:
    llm: fast
    prompt: "A poem about ${inputs.topic}"
  joke:
    llm: fast
    prompt: "A joke about ${inputs.topic}"
  both:
    uses: ./join.py:join
    with: {poem: "${steps.poem.text}", joke: "${steps.joke.text}"}
"""


def config(tmp_path: Path, base: str) -> LegatoConfig:
    path = tmp_path / "legato.yaml"
    path.write_text(f"models:\n  fast: {{provider: openai, model: gpt-4o-mini, base_url: '{base}/v1'}}\n")
    return LegatoConfig.load(path)


def two_steps(tmp_path: Path, base: str) -> Pipeline:
    text = TWO_MODELS
    (tmp_path / "join.py").write_text("async def join(poem, joke):\n    return poem + ' | ' + joke\n")
    (tmp_path / "p.yaml").write_text(text)
    return load_pipeline(tmp_path / "p.yaml", config=config(tmp_path, base))


async def test_stream_yields_tokens_of_parallel_steps_labelled_by_step(
    tmp_path: Path, fake_provider: FakeProvider
) -> None:
    poem, joke = "A poem about cats", "A joke about cats"  # the fake echoes each prompt
    fake_provider.script(*[Reply(chunk_chars=3, chunk_delay=0.001)] * 2)
    pipeline = two_steps(tmp_path, fake_provider.base_url)
    events: list[Event] = [e async for e in pipeline.stream({"topic": "cats"})]
    assert isinstance(events[0], RunStarted)
    assert isinstance(events[-1], RunFinished)
    assert events[-1].status == "succeeded"
    tokens = [e for e in events if isinstance(e, StepToken)]
    assert "".join(t.text for t in tokens if t.step == "poem") == poem
    assert "".join(t.text for t in tokens if t.step == "joke") == joke
    assert len([t for t in tokens if t.step == "poem"]) == len(range(0, len(poem), 3))
    finished = {e.step: e for e in events if isinstance(e, StepFinished)}
    # each step's tokens all arrive before that step finishes
    for t in tokens:
        assert events.index(t) < events.index(finished[t.step])
    assert finished["poem"].output["text"] == poem
    assert finished["both"].output == f"{poem} | {joke}"
    assert all(r.body.get("stream") is True for r in fake_provider.requests)


async def test_a_run_nobody_streams_does_not_stream_from_the_model(tmp_path: Path, fake_provider: FakeProvider) -> None:
    fake_provider.script(Reply(text="one"), Reply(text="two"))
    result = await two_steps(tmp_path, fake_provider.base_url).run({"topic": "cats"})
    assert result.ok, result.error
    assert [r.body.get("stream") for r in fake_provider.requests] == [None, None]


async def test_token_sink_outside_a_streamed_run_is_none() -> None:
    seen: list[StepToken] = []
    p = Pipeline("p")

    @p.step
    async def speak() -> bool:
        sink = token_sink()
        if sink is not None:
            sink("hello")
            sink("")  # empty pieces are dropped
        return sink is not None

    assert token_sink() is None
    assert (await p.run()).outputs["speak"] is False
    with stream_tokens(seen.append):
        assert (await p.run()).outputs["speak"] is True
    assert [(t.step, t.text) for t in seen] == [("speak", "hello")]


async def test_leaving_the_stream_early_cancels_the_run() -> None:
    p = Pipeline("slow")
    finished = anyio.Event()

    @p.step
    async def first() -> int:
        return 1

    @p.step
    async def forever(first: int) -> int:
        await anyio.sleep_forever()
        finished.set()
        return first

    async with contextlib.aclosing(p.stream()) as events:
        async for event in events:
            if isinstance(event, StepFinished):
                break
    assert not finished.is_set()
