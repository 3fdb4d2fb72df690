"""Token deltas on the runs API's event stream: a run started with ``"stream": true``
sends its ``llm:`` steps' tokens to ``/events`` followers as ``token`` events,
through a real gateway in front of the fake provider."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from legato.config import LegatoConfig
from legato.server import create_app
from legato.testing import FakeProvider, Reply

from .conftest import Running, catalog_for, gateway_settings, serve_in_thread
from .test_runs_api import read_sse, wait_for

PIPELINE = """\
name: tell
inputs:
  topic: string
steps:
  poem:
    llm: fast
    prompt: "A poem about ${inputs.topic}"
  joke:
    llm: fast
    prompt: "A joke about ${inputs.topic}"
"""


@pytest.fixture(scope="module")
def streaming_gateway(fake: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp: Path = tmp_path_factory.mktemp("stream")
    (tmp / "pipelines").mkdir()
    (tmp / "pipelines" / "tell.yaml").write_text(PIPELINE)
    models = {"fast": {"provider": "openai", "model": "gpt-4o-mini", "base_url": fake.openai_base_url}}
    config = LegatoConfig({"models": models, "pipelines": [str(tmp / "pipelines")]}, source=str(tmp / "legato.yaml"))
    app = create_app(gateway_settings(tmp), catalog=catalog_for(fake), config=config)
    with serve_in_thread(app) as url:
        yield Running(url, app, fake)


def test_events_carry_token_deltas_of_a_streamed_run(streaming_gateway: Running) -> None:
    key = streaming_gateway.create_key(["runs:read", "runs:write"])
    # slow enough that the follower connects while the models still write
    streaming_gateway.fake.script(*[Reply(chunk_chars=2, first_chunk_delay=0.5, chunk_delay=0.01)] * 2)
    with streaming_gateway.client(key) as c:
        r = c.post("/v1/pipelines/tell/runs", json={"inputs": {"topic": "cats"}, "stream": True})
        assert r.status_code == 202, r.text
        run_id = r.json()["id"]
        with c.stream("GET", f"/v1/runs/{run_id}/events") as resp:
            events = read_sse(resp)
    names = [e[0] for e in events]
    assert names[-1] == "end"
    assert events[-1][1] == {"status": "succeeded"}
    text: dict[str, str] = defaultdict(str)
    for name, data, event_id in events:
        if name == "token":
            assert event_id is None  # not stored, not resumable
            text[data["step"]] += data["text"]
    assert dict(text) == {"poem": "A poem about cats", "joke": "A joke about cats"}
    finished = [i for i, e in enumerate(events) if e[0] == "StepFinished"]
    last_token = max(i for i, e in enumerate(events) if e[0] == "token")
    assert last_token < max(finished)


def test_a_run_not_streamed_sends_no_tokens_and_rejects_a_bad_flag(streaming_gateway: Running) -> None:
    key = streaming_gateway.create_key(["runs:read", "runs:write"])
    streaming_gateway.fake.script(*[Reply()] * 2)
    with streaming_gateway.client(key) as c:
        bad = c.post("/v1/pipelines/tell/runs", json={"inputs": {"topic": "x"}, "stream": "yes please"})
        assert bad.status_code == 400, bad.text
        run_id = c.post("/v1/pipelines/tell/runs", json={"inputs": {"topic": "dogs"}}).json()["id"]
        wait_for(c, run_id, {"succeeded"})
        with c.stream("GET", f"/v1/runs/{run_id}/events") as resp:
            events = read_sse(resp)
    assert "token" not in [e[0] for e in events]
    assert all(r.body.get("stream") is None for r in streaming_gateway.fake.requests)
