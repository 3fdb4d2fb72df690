"""Two gateway replicas (two ``legato serve`` processes on different loopback ports)
sharing PostgreSQL and Redis: keys, limits, budgets and runs are shared; SIGTERM
drains in-flight work."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from _serve import ServeProcess
from legato.testing import FakeProvider, Reply

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

MASTER = "mk-replicas-0123456789"

CONFIG = """\
models:
  gpt-fake:
    provider: openai
    model: gpt-fake
    base_url: {base_url}
    api_key: env:REPLICA_FAKE_KEY
    price: {{input: 1000, output: 1000}}
pipelines:
  shout: shout.yaml
  refund: refund.yaml
server:
  master_key: env:REPLICA_MASTER_KEY
  redis_prefix: "{redis_prefix}"
  key_cache_ttl_s: 0
  drain_timeout_s: 20
"""

PIPELINE = """\
name: shout
inputs:
  text: {type: string}
steps:
  upper:
    uses: ./steps.py:upper
    with: {text: "${inputs.text}"}
"""

REFUND = """\
name: refund
inputs:
  amount: {type: number}
steps:
  approve:
    wait:
      kind: approval
      question: Refund ${inputs.amount} EUR?
  note:
    wait:
      kind: answer
      question: Why?
      schema: {type: object, properties: {reason: {type: string, minLength: 3}}, required: [reason]}
    depends_on: [approve]
  pay:
    uses: ./steps.py:pay
    when: steps.approve
    with: {amount: "${inputs.amount}", reason: "${steps.note.reason}"}
"""


class Replica(ServeProcess):
    """A gateway replica on the test's PostgreSQL database and Redis."""

    def __init__(self, config: Path, database_url: str, redis_url: str) -> None:
        self.config = config
        env = {"REPLICA_FAKE_KEY": "sk-fake", "REPLICA_MASTER_KEY": MASTER}
        super().__init__(config, "--database-url", database_url, "--redis-url", redis_url, env=env)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    with FakeProvider(seed=0).in_thread() as provider:
        yield provider


@pytest.fixture(scope="module")
def replicas(
    fake: FakeProvider, postgres_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Replica, Replica]]:
    import redis

    tmp = tmp_path_factory.mktemp("replicas")
    prefix = f"legato-test:replicas-{os.getpid()}:"
    (tmp / "legato.yaml").write_text(CONFIG.format(base_url=fake.openai_base_url, redis_prefix=prefix))
    (tmp / "shout.yaml").write_text(PIPELINE)
    (tmp / "refund.yaml").write_text(REFUND)
    (tmp / "steps.py").write_text(
        "def upper(text: str) -> str:\n    return text.upper()\n\n"
        "def pay(amount: float, reason: str) -> str:\n    return f'refunded {amount} ({reason})'\n"
    )
    a = Replica(tmp / "legato.yaml", postgres_url, redis_url)
    a.wait_ready()  # the first one migrates the shared database
    b = Replica(tmp / "legato.yaml", postgres_url, redis_url)
    try:
        b.wait_ready()
        yield a, b
    finally:
        a.stop()
        b.stop()
        r = redis.Redis.from_url(redis_url)
        names = list(r.scan_iter(match=prefix + "*"))
        if names:
            r.delete(*names)
        r.close()


def make_key(replica: Replica, **fields: object) -> str:
    with replica.client(MASTER) as c:
        r = c.post("/v1/admin/keys", json={"name": "replicas", "scopes": ["chat", "runs:read", "runs:write"], **fields})
        assert r.status_code == 201, r.text
        return str(r.json()["key"])


CHAT = {"model": "gpt-fake", "messages": [{"role": "user", "content": "hello there"}]}


def test_a_key_created_on_a_works_on_b_and_revocation_is_shared(replicas: tuple[Replica, Replica]) -> None:
    a, b = replicas
    key = make_key(a)
    with b.client(key) as c:
        r = c.post("/v1/chat/completions", json=CHAT)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == "hello there"
    with b.client(MASTER) as c:
        assert c.delete(f"/v1/admin/keys/{key[:12]}").status_code == 200
    with a.client(key) as c:
        assert c.post("/v1/chat/completions", json=CHAT).status_code == 401


def test_rate_limits_are_shared(replicas: tuple[Replica, Replica]) -> None:
    a, b = replicas
    key = make_key(a, rpm=4)
    with a.client(key) as ca, b.client(key) as cb:
        codes = [c.post("/v1/chat/completions", json=CHAT).status_code for c in (ca, cb, ca, cb)]
        assert codes == [200, 200, 200, 200]
        for c in (ca, cb):
            r = c.post("/v1/chat/completions", json=CHAT)
            assert r.status_code == 429
            assert int(r.headers["retry-after"]) >= 1


def test_budgets_are_shared(replicas: tuple[Replica, Replica]) -> None:
    """Each call costs $0.006 (6 tokens at $1,000/1M); a $0.01 budget allows two, on either replica."""
    a, b = replicas
    key = make_key(a, budget_usd=0.01, budget_period="day")
    with a.client(key) as ca, b.client(key) as cb:
        assert ca.post("/v1/chat/completions", json=CHAT).status_code == 200
        assert cb.post("/v1/chat/completions", json=CHAT).status_code == 200
        refused = ca.post("/v1/chat/completions", json=CHAT)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "budget_exceeded"
        assert cb.post("/v1/chat/completions", json=CHAT).json()["error"]["code"] == "budget_exceeded"
    with b.client(MASTER) as c:  # the durable record agrees (flushed by whichever replica answers)
        rows = c.get("/v1/admin/spend", params={"key": key[:12]}).json()["data"]
    assert sum(r["requests"] for r in rows) >= 1


def test_runs_are_visible_from_every_replica(replicas: tuple[Replica, Replica]) -> None:
    a, b = replicas
    key = make_key(a)
    with a.client(key) as ca, b.client(key) as cb:
        started = ca.post(
            "/v1/pipelines/shout/runs", json={"inputs": {"text": "hi"}}, headers={"Idempotency-Key": "k1"}
        )
        assert started.status_code == 202
        again = cb.post("/v1/pipelines/shout/runs", json={"inputs": {"text": "hi"}}, headers={"Idempotency-Key": "k1"})
        assert again.status_code == 200
        assert again.json()["id"] == started.json()["id"]
        deadline = time.monotonic() + 60
        while (run := cb.get(f"/v1/runs/{started.json()['id']}").json())["status"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert run["outputs"] == {"upper": "HI"}


def test_sigterm_drains_in_flight_requests(fake: FakeProvider, replicas: tuple[Replica, Replica]) -> None:
    """The last test: it stops replica A. A slow request in flight at SIGTERM still completes."""
    a, b = replicas
    key = make_key(a)
    fake.script(Reply(text="slow but complete", delay=1.5))
    seen = len(fake.requests)
    result: list[httpx.Response] = []

    def call() -> None:
        with a.client(key) as c:
            result.append(c.post("/v1/chat/completions", json=CHAT))

    t = threading.Thread(target=call)
    t.start()
    while len(fake.requests) == seen:  # the request is now in flight at the provider
        t.join(0.01)
    a.proc.send_signal(signal.SIGTERM)
    t.join(30)
    assert result[0].status_code == 200
    assert result[0].json()["choices"][0]["message"]["content"] == "slow but complete"
    # uvicorn re-raises the signal once it has shut down cleanly, so supervisors see it.
    assert a.proc.wait(30) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in a.log()
    with b.client(key) as c:  # the other replica carries on
        assert c.post("/v1/chat/completions", json=CHAT).status_code == 200


def wait_status(client: httpx.Client, run_id: str, wanted: set[str]) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while (run := client.get(f"/v1/runs/{run_id}").json())["status"] not in wanted:
        assert time.monotonic() < deadline, run
        time.sleep(0.05)
    return dict(run)


def test_an_approval_survives_a_gateway_restart_and_resumes_on_the_other_replica(
    replicas: tuple[Replica, Replica], postgres_url: str, redis_url: str
) -> None:
    """The run waits on replica A (no lease held), A is restarted, the answers go to
    replica B through the runs API, and the run completes; the ownership rule, bad
    answers and answers to steps that are not waiting are checked on the way."""
    shared, b = replicas
    a = Replica(shared.config, postgres_url, redis_url)  # its own replica A: the drain test stops the shared one
    try:
        a.wait_ready()
        key, other = make_key(a), make_key(a)
    except BaseException:
        a.stop()
        raise
    with a.client(key) as ca:
        started = ca.post("/v1/pipelines/refund/runs", json={"inputs": {"amount": 40}})
        assert started.status_code == 202, started.text
        run_id = str(started.json()["id"])
        run = wait_status(ca, run_id, {"waiting", "failed"})
    assert run["status"] == "waiting"
    assert run["lease_owner"] is None
    waiting = [s for s in run["steps"] if s["status"] == "waiting"]  # type: ignore[union-attr]
    assert [s["step"] for s in waiting] == ["approve"]
    assert waiting[0]["meta"]["request"]["question"] == "Refund 40 EUR?"

    a.stop()  # the gateway that ran it goes away; nothing holds the run
    restarted = Replica(shared.config, postgres_url, redis_url)
    try:
        restarted.wait_ready()
        respond = f"/v1/runs/{run_id}/steps/approve/respond"
        with b.client(other) as co:
            assert co.post(respond, json={"approved": True}).status_code == 404  # another key's run
        with b.client(key) as cb:
            bad = cb.post(respond, json={"value": "yes"})
            assert bad.status_code == 400, bad.text
            assert bad.json()["error"]["code"] == "invalid_answer"
            assert "'yes' is not of type 'boolean'" in bad.json()["error"]["message"]
            assert cb.post(respond, json={"approved": True, "value": 1}).status_code == 400
            coerced = cb.post(respond, json={"approved": "yes"})  # a string is not an approval
            assert (coerced.status_code, coerced.json()["error"]["param"]) == (400, "approved"), coerced.text
            assert cb.post(f"/v1/runs/{run_id}/steps/pay/respond", json={"approved": True}).status_code == 409
            ok = cb.post(respond, json={"approved": True})
            assert ok.status_code == 200, ok.text
            assert cb.post(respond, json={"approved": True}).json()["error"]["code"] == "step_not_waiting"
            run = wait_status(cb, run_id, {"waiting", "failed", "succeeded"})
            assert run["status"] == "waiting"  # now on the second question
            note = f"/v1/runs/{run_id}/steps/note/respond"
            short = cb.post(note, json={"value": {"reason": "no"}})
            assert short.status_code == 400
            assert "is too short" in short.json()["error"]["message"]
            assert cb.post(note, json={"value": {"reason": "damaged parcel"}}).status_code == 200
        with restarted.client(key) as cr:
            run = wait_status(cr, run_id, {"succeeded", "failed"})
        assert run["status"] == "succeeded", run
        assert run["outputs"] == {
            "approve": True,
            "note": {"reason": "damaged parcel"},
            "pay": "refunded 40 (damaged parcel)",
        }
    finally:
        restarted.stop()
