"""Time to first token through a pipeline against calling the model directly.

The fake provider (in a thread of its own, on loopback) streams an answer in
chunks. Three ways to get the first piece of text, samples interleaved so that
other load hits all alike:

* **direct, warm**: ``OpenAIModel.stream`` on a model whose connection is open;
* **direct, as the step calls it**: ``legato.models.get`` + ``stream`` + ``aclose``
  per call, which is what an ``llm:`` step does for every call;
* **pipeline, llm: step**: ``Pipeline.stream`` of a one-step ``llm:`` pipeline
  loaded from YAML, timed to its first ``StepToken`` (run set-up, the step's
  binding and the token callback included);
* **pipeline, Python step on the warm model**: ``Pipeline.stream`` of a one-step
  pipeline whose step streams from the warm model into ``token_sink()``: what the
  pipeline itself adds, without the model set-up an ``llm:`` step does per call.

The target: the pipeline adds at most 2 ms to the first token over the direct
call. Also the time to the last event (``RunFinished``) of the pipeline against
the end of the direct stream.

Writes ``bench/results/streaming.json``. Run: ``python bench/streaming.py``.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

import legato.models
from legato.config import LegatoConfig
from legato.engine import Pipeline, RunFinished, StepToken, token_sink
from legato.providers import ChatRequest, Message, OpenAIModel
from legato.spec import load_pipeline
from legato.testing import FakeProvider, Reply

RESULTS = Path(__file__).resolve().parent / "results" / "streaming.json"
SAMPLES = 200
PROMPT = "Write about tea"
PIPELINE = """\
name: ttft
inputs:
  topic: string
steps:
  say:
    llm: fast
    prompt: "Write about ${inputs.topic}"
"""

Sample = Callable[[], Awaitable[tuple[float, float]]]  # -> (first token s, done s)


def request() -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content=PROMPT)])


async def first_and_last(stream: Any) -> tuple[float, float]:
    start = time.perf_counter()
    first = 0.0
    async for chunk in stream:
        if not first and chunk.text:
            first = time.perf_counter() - start
    return first, time.perf_counter() - start


async def main() -> None:
    with FakeProvider(seed=0).in_thread() as fake, tempfile.TemporaryDirectory() as tmp:
        fake.script(*[Reply(chunk_chars=4)] * (SAMPLES * 4 + 50))
        (Path(tmp) / "legato.yaml").write_text(
            f"models:\n  fast: {{provider: openai, model: gpt-4o-mini, base_url: '{fake.openai_base_url}'}}\n"
        )
        config = LegatoConfig.load(Path(tmp) / "legato.yaml")
        warm = OpenAIModel("gpt-4o-mini", api_key="sk-fake", base_url=fake.openai_base_url)
        pipeline = load_pipeline(PIPELINE, config=config)

        async def direct_warm() -> tuple[float, float]:
            return await first_and_last(warm.stream(request()))

        async def direct_as_step() -> tuple[float, float]:
            model = legato.models.get("fast", config)
            try:
                return await first_and_last(model.stream(request()))
            finally:
                await model.aclose()

        python = Pipeline("ttft_python")

        @python.step
        async def say(topic: str) -> str:
            sink = token_sink()
            parts = []
            async for chunk in warm.stream(request()):
                if chunk.text:
                    parts.append(chunk.text)
                    if sink is not None:
                        sink(chunk.text)
            return "".join(parts)

        async def through(p: Pipeline) -> tuple[float, float]:
            start = time.perf_counter()
            first = 0.0
            async for event in p.stream({"topic": "tea"}):
                if not first and isinstance(event, StepToken):
                    first = time.perf_counter() - start
                elif isinstance(event, RunFinished):
                    assert event.status == "succeeded", event.error
            return first, time.perf_counter() - start

        async def through_llm_step() -> tuple[float, float]:
            return await through(pipeline)

        async def through_python_step() -> tuple[float, float]:
            return await through(python)

        kinds: dict[str, Sample] = {
            "direct_warm": direct_warm,
            "pipeline_python_step_warm": through_python_step,
            "direct_as_step": direct_as_step,
            "pipeline_llm_step": through_llm_step,
        }
        for sample in kinds.values():  # warm up every path
            for _ in range(10):
                await sample()
        firsts: dict[str, list[float]] = {k: [] for k in kinds}
        totals: dict[str, list[float]] = {k: [] for k in kinds}
        for _ in range(SAMPLES):
            for name, sample in kinds.items():
                first, total = await sample()
                firsts[name].append(first * 1000)
                totals[name].append(total * 1000)
        await warm.aclose()
    results: dict[str, Any] = {"samples": SAMPLES}
    for name in kinds:
        results[name] = {
            "ttft_ms_p50": statistics.median(firsts[name]),
            "ttft_ms_p90": statistics.quantiles(firsts[name], n=10)[-1],
            "total_ms_p50": statistics.median(totals[name]),
        }
    added = results["pipeline_python_step_warm"]["ttft_ms_p50"] - results["direct_warm"]["ttft_ms_p50"]
    results["pipeline_added_ttft_ms_p50"] = added
    results["llm_step_added_ttft_ms_p50"] = (
        results["pipeline_llm_step"]["ttft_ms_p50"] - results["direct_as_step"]["ttft_ms_p50"]
    )
    print(f"time to first token, fake provider on loopback, {SAMPLES} samples each (interleaved)")
    print(f"{'path':<34}{'TTFT p50':>10}{'TTFT p90':>10}{'total p50':>11}")
    for name in kinds:
        r = results[name]
        print(f"{name:<34}{r['ttft_ms_p50']:>8.2f}ms{r['ttft_ms_p90']:>8.2f}ms{r['total_ms_p50']:>9.2f}ms")
    print(f"the pipeline adds {added:+.2f} ms to the first token over the direct call (same warm model)")
    llm_added = results["llm_step_added_ttft_ms_p50"]
    print(f"an llm: step adds {llm_added:+.2f} ms over the direct call it makes (a new model per call)")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    anyio.run(main)
