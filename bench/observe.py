"""Observability overhead: tracing and metrics on and off, per model call and per step.

Floors are measured in the same run:

* per model call: a Python model's ``chat`` called directly, against the same model
  wrapped in :class:`legato.observe.Instrumented` with tracing off (metrics only),
  and with tracing on (OpenTelemetry SDK, batch span processor, an exporter that
  drops spans: the cost of recording, not of the network);
* per step: a 100-step fan-out pipeline with no subscriber, against the same run
  with a no-op subscriber (what the event bus itself costs), with a disabled
  :class:`TracingSubscriber`, with metrics, and with tracing on;
* the disabled hooks alone: the tracing check and a disabled subscriber's call.

Times are CPU time of this process (``time.process_time``): the work measured never
waits, and CPU time is not inflated when other processes share the machine.

Writes ``bench/results/observe.json``. Run: ``python bench/observe.py``.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from legato.engine import Pipeline
from legato.observe import Instrumented, Metrics, MetricsSubscriber, TracingSubscriber
from legato.providers import ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, Message, Usage

RESULTS = Path(__file__).resolve().parent / "results" / "observe.json"
CALLS = 20_000
STEPS = 100
RUNS = 60
REPEATS = 5


class DropExporter(SpanExporter):
    """Accepts spans and throws them away."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


class Constant:
    """A model answering at once, so the measurement is the wrapper's own cost."""

    name = "constant"
    provider = "python"

    def __init__(self) -> None:
        self.reply = ChatResponse(
            message=Message(role="assistant", content="ok"),
            model="constant",
            provider="python",
            usage=Usage(input_tokens=12, output_tokens=3),
            cost=0.0001,
        )

    async def chat(self, request: ChatRequest) -> ChatResponse:
        return self.reply

    def stream(self, request: ChatRequest) -> Any:
        raise NotImplementedError

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


def best_of(fn: Callable[[], Awaitable[float]]) -> float:
    return min(asyncio.run(fn()) for _ in range(REPEATS))


def per_call(model: Any) -> Callable[[], Awaitable[float]]:
    request = ChatRequest(messages=[Message(role="user", content="hi")])

    async def run() -> float:
        for _ in range(200):  # warm up
            await model.chat(request)
        start = time.process_time()
        for _ in range(CALLS):
            await model.chat(request)
        return (time.process_time() - start) / CALLS

    return run


def fan_out() -> Pipeline:
    p = Pipeline("fan_out")

    async def leaf(root: int) -> int:
        return root

    @p.step
    async def root(x: int) -> int:
        return x

    for i in range(STEPS - 1):
        p.add_step(leaf, name=f"leaf_{i}")
    return p


def per_step(subscribers: Callable[[], list[Any]]) -> Callable[[], Awaitable[float]]:
    p = fan_out()

    async def run() -> float:
        await p.run(x=1, subscribers=subscribers())
        times = []
        for _ in range(RUNS):
            subs = subscribers()
            start = time.process_time()
            await p.run(x=1, subscribers=subs)
            times.append(time.process_time() - start)
        return statistics.median(times) / STEPS

    return run


def _noop(event: Any) -> None:
    return None


def hook_cost() -> dict[str, float]:
    """CPU time of the disabled hooks themselves, per call."""
    from legato.engine import StepStarted
    from legato.observe import tracing_enabled

    n = 1_000_000
    sub = TracingSubscriber()
    event = StepStarted("run", 0.0, step="s")
    out = {}
    start = time.process_time()
    for _ in range(n):
        pass
    loop = time.process_time() - start
    start = time.process_time()
    for _ in range(n):
        tracing_enabled()
    out["tracing_enabled() check"] = (time.process_time() - start - loop) / n
    start = time.process_time()
    for _ in range(n):
        sub(event)
    out["TracingSubscriber(event), tracing off"] = (time.process_time() - start - loop) / n
    return out


def main() -> None:
    exporter = DropExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=100_000))
    metrics = Metrics()
    bare = Constant()
    calls = {
        "bare model (floor)": best_of(per_call(bare)),
        "Instrumented, tracing off": best_of(per_call(Instrumented(bare, metrics=metrics))),
        "Instrumented, tracing on": best_of(per_call(Instrumented(bare, metrics=metrics, tracer_provider=provider))),
    }
    steps = {
        "no subscriber (floor)": best_of(per_step(list)),
        "a no-op subscriber (event bus cost)": best_of(per_step(lambda: [_noop])),
        "TracingSubscriber, tracing off": best_of(per_step(lambda: [TracingSubscriber()])),
        "MetricsSubscriber": best_of(per_step(lambda: [MetricsSubscriber(metrics)])),
        "TracingSubscriber, tracing on": best_of(per_step(lambda: [TracingSubscriber(provider)])),
    }
    provider.shutdown()
    hooks = hook_cost()
    call_floor = calls["bare model (floor)"]
    step_floor = steps["no subscriber (floor)"]
    print(f"{'per model call':<34} {'us/call':>10} {'added us':>10}")
    for name, t in calls.items():
        print(f"{name:<34} {t * 1e6:>10.2f} {(t - call_floor) * 1e6:>10.2f}")
    print(f"\n{'per step (100-step fan-out)':<34} {'us/step':>10} {'added us':>10}")
    for name, t in steps.items():
        print(f"{name:<34} {t * 1e6:>10.2f} {(t - step_floor) * 1e6:>10.2f}")
    print(f"\n{'disabled hooks':<34} {'ns/call':>10}")
    for name, t in hooks.items():
        print(f"{name:<38} {t * 1e9:>6.0f}")
    print(f"\nspans exported (dropped): {exporter.spans}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "per_call_us": {k: round(v * 1e6, 3) for k, v in calls.items()},
                "per_call_added_us": {k: round((v - call_floor) * 1e6, 3) for k, v in calls.items()},
                "per_step_us": {k: round(v * 1e6, 3) for k, v in steps.items()},
                "per_step_added_us": {k: round((v - step_floor) * 1e6, 3) for k, v in steps.items()},
                "disabled_hooks_ns": {k: round(v * 1e9, 1) for k, v in hooks.items()},
                "calls": CALLS,
                "steps": STEPS,
                "runs": RUNS,
                "repeats": REPEATS,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
