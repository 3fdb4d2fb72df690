"""Where the runs API puts a run: executed here, its queue, its pipeline's queue, or
(on a gateway started with --no-execute) the default queue."""

from __future__ import annotations

from legato.server._runs import RunsService
from legato.store import QueueSettings, QueuesSection, RunStore

QUEUES = QueuesSection({"reports": QueueSettings(concurrency=2, pipelines=["summarize"])})


def test_an_executing_gateway_enqueues_only_what_names_a_queue() -> None:
    runs = RunsService(RunStore(":memory:"), {}, queues=QUEUES)
    assert runs.queue_for("other", None) is None  # executed in the gateway
    assert runs.queue_for("summarize", None) == "reports"  # its pipeline's queue from legato.yaml
    assert runs.queue_for("other", "bulk") == "bulk"  # the body's queue wins


def test_a_no_execute_gateway_enqueues_every_run() -> None:
    runs = RunsService(RunStore(":memory:"), {}, queues=QUEUES, execute=False)
    assert runs.queue_for("other", None) == "default"
    assert runs.queue_for("summarize", None) == "reports"
    assert runs.queue_for("other", "bulk") == "bulk"
