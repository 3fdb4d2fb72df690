from __future__ import annotations

import pytest

from legato.engine._events import RunFinished, RunStarted, RunStatus, StepFailed, StepFinished, StepRetried
from legato.observe import Metrics, MetricsSubscriber

from .conftest import EchoModel, scrape


def test_run_and_step_counters_from_events(metrics: Metrics) -> None:
    sub = MetricsSubscriber(metrics)
    sub(RunStarted("r1", 0.0, pipeline="docs", inputs={}))
    assert scrape(metrics)[("legato_runs_in_progress", (("pipeline", "docs"),))] == 1
    sub(StepFinished("r1", 1.0, step="ocr", output="x", duration_s=0.3))
    sub(StepRetried("r1", 1.0, step="llm", attempt=1, delay_s=0.1, error_type="RateLimited", message=""))
    sub(StepFailed("r1", 2.0, step="llm", error_type="ValueError", message="", duration_s=0.2))
    sub(RunFinished("r1", 2.0, status=RunStatus.FAILED, outputs={}, duration_s=2.0))
    s = scrape(metrics)
    assert s[("legato_steps_total", (("pipeline", "docs"), ("status", "succeeded"), ("step", "ocr")))] == 1
    assert s[("legato_steps_total", (("pipeline", "docs"), ("status", "failed"), ("step", "llm")))] == 1
    assert s[("legato_step_retries_total", (("pipeline", "docs"), ("step", "llm")))] == 1
    assert s[("legato_step_duration_seconds_count", (("pipeline", "docs"), ("step", "ocr")))] == 1
    assert s[("legato_runs_total", (("pipeline", "docs"), ("status", "failed")))] == 1
    assert s[("legato_run_duration_seconds_sum", (("pipeline", "docs"),))] == 2.0
    assert s[("legato_runs_in_progress", (("pipeline", "docs"),))] == 0


def test_breaker_cache_and_queue_series(metrics: Metrics) -> None:
    metrics.set_breaker_state("openai/gpt-4o#0", "open")
    metrics.set_breaker_state("openai/gpt-4o#1", "half_open")
    metrics.record_cache(True)
    metrics.record_cache(False)
    metrics.record_cache(False)
    metrics.set_queue_depth("bulkhead:openai", 7)
    s = scrape(metrics)
    assert s[("legato_breaker_state", (("deployment", "openai/gpt-4o#0"),))] == 2
    assert s[("legato_breaker_state", (("deployment", "openai/gpt-4o#1"),))] == 1
    assert s[("legato_cache_requests_total", (("cache", "response"), ("result", "hit")))] == 1
    assert s[("legato_cache_requests_total", (("cache", "response"), ("result", "miss")))] == 2
    assert s[("legato_queue_depth", (("queue", "bulkhead:openai"),))] == 7
    with pytest.raises(ValueError, match="unknown breaker state 'ajar'"):
        metrics.set_breaker_state("x", "ajar")


def test_label_values_never_carry_secrets(metrics: Metrics) -> None:
    metrics.record_model_call(
        model="sk-abcdefghijklmnopqrstuvwx", provider="", operation="chat", status="ok", duration_s=0.1
    )
    body = metrics.render()[0].decode()
    assert "sk-abcdefghijklmnopqrstuvwx" not in body
    assert 'model="[REDACTED]",operation="chat",provider="unknown"' in body


def test_two_instances_do_not_share_series() -> None:
    a, b = Metrics(), Metrics()
    a.record_cache(True)
    assert "legato_cache_requests_total{" in a.render()[0].decode()
    assert "legato_cache_requests_total{" not in b.render()[0].decode()


async def test_queue_depth_is_read_from_a_bulkhead_at_scrape_time(metrics: Metrics) -> None:
    import anyio

    from legato.resilience import Bulkhead, BulkheadPolicy

    bulkhead = Bulkhead(EchoModel(), BulkheadPolicy(max_concurrent=1, max_queue=5, queue_timeout=60))
    metrics.watch_queue("bulkhead:echo", bulkhead)
    key = ("legato_queue_depth", (("queue", "bulkhead:echo"),))
    assert scrape(metrics)[key] == 0
    await bulkhead.acquire()  # the only slot
    async with anyio.create_task_group() as tg:
        for _ in range(2):
            tg.start_soon(bulkhead.acquire)
        await anyio.wait_all_tasks_blocked()
        assert scrape(metrics)[key] == 2
        for _ in range(3):
            bulkhead.release()
    assert scrape(metrics)[key] == 0
    with pytest.raises(TypeError, match="has no 'waiting' or 'queued' count"):
        metrics.watch_queue("x", object())
