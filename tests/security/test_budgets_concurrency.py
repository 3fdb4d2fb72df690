"""Budgets under 40 concurrent callers, the limits store going away, and revocation across replicas.

Every test runs real ``legato serve`` processes in front of the fake provider: one
replica on SQLite, or two replicas sharing PostgreSQL and Redis. Each call costs
$0.001 per token (``price: {input: 1000, output: 1000}``); "hello there" answered
by its echo is 6 tokens, $0.006.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from _serve import ServeProcess
from legato.testing import FakeProvider, Reply

pytestmark = [pytest.mark.slow]

CONFIG = """\
models:
  gpt-fake:
    provider: openai
    model: gpt-fake
    base_url: {base_url}
    api_key: env:SECURITY_FAKE_KEY
    price: {{input: 1000, output: 1000}}
groups:
  fake-group:
    deployments:
      - {{model: gpt-fake}}
server:
  master_key: env:SECURITY_MASTER_KEY
  redis_prefix: "{redis_prefix}"
  key_cache_ttl_s: {key_cache_ttl_s}
  max_output_tokens: 256
  drain_timeout_s: 5
  drain_delay_s: 0
{extra}"""

PROMPT = [{"role": "user", "content": "hello there"}]
PER_TOKEN = 0.001
# The worst case of one call: the prompt's estimate (a few tokens; 32 bounds it) plus
# max_tokens, or the gateway's max_output_tokens (256) for a request without it.
WORST_MAX_TOKENS_16 = (32 + 16) * PER_TOKEN
WORST_NO_MAX_TOKENS = (32 + 256) * PER_TOKEN


def write_config(
    tmp: Path, fake: FakeProvider, *, prefix: str = "legato-test:", ttl: float = 0, extra: str = ""
) -> Path:
    path = tmp / "legato.yaml"
    text = CONFIG.format(
        base_url=fake.openai_base_url, redis_prefix=prefix, key_cache_ttl_s=ttl, extra=extra and f"  {extra}\n"
    )
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    # Slow enough that the 40 calls are all in flight before the first one is answered.
    with FakeProvider(seed=0, default=Reply(delay=0.3)).in_thread() as provider:
        yield provider


@pytest.fixture(scope="module")
def one_replica(fake: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    tmp = tmp_path_factory.mktemp("one")
    serve = ServeProcess(write_config(tmp, fake), "--database-url", f"sqlite:///{tmp / 'legato.db'}")
    try:
        serve.wait_ready()
        yield serve
    finally:
        serve.stop()


@pytest.fixture(scope="module")
def two_replicas(
    fake: FakeProvider, postgres_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServeProcess, ServeProcess]]:
    import redis

    tmp = tmp_path_factory.mktemp("two")
    prefix = f"legato-test:security-{os.getpid()}:"
    # A key cache far longer than any test: only the pub/sub invalidation can make
    # a revocation visible on the other replica while a test runs.
    config = write_config(tmp, fake, prefix=prefix, ttl=3600)
    args = ("--database-url", postgres_url, "--redis-url", redis_url)
    a = ServeProcess(config, *args)
    a.wait_ready()  # the first one migrates the shared database
    b = ServeProcess(config, *args)
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


def spent(key: str, *replicas: ServeProcess) -> float:
    """The durable spend of ``key``, after every replica flushed its buffered records."""
    total = 0.0
    for serve in replicas:  # each read flushes that replica's buffer first
        with serve.client() as c:
            rows = c.get("/v1/admin/spend", params={"key": key[:12]}).json()["data"]
        total = float(sum(r["cost"] for r in rows))
    return total


async def storm(targets: list[str], key: str, path: str, body: dict[str, Any], n: int = 40) -> list[httpx.Response]:
    """``n`` calls at once, spread over ``targets`` (replica URLs)."""
    results: list[httpx.Response] = []
    headers = {"Authorization": f"Bearer {key}"}
    if path == "/v1/messages":
        headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(headers=headers, timeout=60, limits=limits) as client:

        async def call(i: int) -> None:
            results.append(await client.post(targets[i % len(targets)] + path, json=body))

        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(call, i)
    return results


def outcome(results: list[httpx.Response]) -> tuple[int, set[str]]:
    """How many calls were answered, and the error codes of the others."""
    answered = sum(r.status_code == 200 for r in results)
    codes = set()
    for r in results:
        if r.status_code != 200:
            assert r.status_code == 429, r.text
            error = r.json()["error"]
            codes.add(error.get("code") or error["type"])  # Anthropic errors have a type only
    return answered, codes


CASES = {
    "openai max_tokens": ("/v1/chat/completions", {"model": "gpt-fake", "messages": PROMPT, "max_tokens": 16}),
    "openai stream": ("/v1/chat/completions", {"model": "gpt-fake", "messages": PROMPT, "stream": True}),
    "anthropic": ("/v1/messages", {"model": "gpt-fake", "messages": PROMPT, "max_tokens": 16}),
    "routing group": ("/v1/chat/completions", {"model": "fake-group", "messages": PROMPT, "max_tokens": 16}),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_one_replica_admits_at_most_one_call_a_budget_cannot_cover(
    one_replica: ServeProcess, fake: FakeProvider, case: str
) -> None:
    path, body = CASES[case]
    key = one_replica.create_key(["chat"], budget_usd=0.004, budget_period="day")
    before = len(fake.requests)
    answered, codes = outcome(await storm([one_replica.url], key, path, body))
    assert answered <= 1
    assert len(fake.requests) - before <= 1  # the refused calls never reached the provider
    assert codes <= {"budget_exceeded", "rate_limit_error"}, codes
    assert spent(key, one_replica) <= 0.004 + WORST_NO_MAX_TOKENS


@pytest.mark.postgres
@pytest.mark.redis
async def test_two_replicas_admit_at_most_one_call_a_budget_cannot_cover(
    two_replicas: tuple[ServeProcess, ServeProcess], fake: FakeProvider
) -> None:
    a, b = two_replicas
    path, body = CASES["openai max_tokens"]
    key = a.create_key(["chat"], budget_usd=0.004, budget_period="day")
    before = len(fake.requests)
    answered, _ = outcome(await storm([a.url, b.url], key, path, body))
    assert answered <= 1
    assert len(fake.requests) - before <= 1
    assert spent(key, a, b) <= 0.004 + WORST_MAX_TOKENS_16


@pytest.mark.postgres
@pytest.mark.redis
async def test_two_replicas_never_spend_more_than_the_budget_and_one_worst_case(
    two_replicas: tuple[ServeProcess, ServeProcess],
) -> None:
    """A budget of about five calls: the storm spends it and stops within one worst case."""
    a, b = two_replicas
    path, body = CASES["openai max_tokens"]
    key = a.create_key(["chat"], budget_usd=0.03, budget_period="day")
    answered, codes = outcome(await storm([a.url, b.url], key, path, body))
    assert answered >= 1
    assert spent(key, a, b) <= 0.03 + WORST_MAX_TOKENS_16
    assert "budget_exceeded" in codes


@pytest.fixture(scope="module")
def silent_redis() -> Iterator[str]:
    """A port that accepts connections and never answers: a Redis that stopped being reachable."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"


def closed_redis() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"  # nothing listens there once the socket is closed


@pytest.fixture(scope="module", params=["closed port", "silent server"])
def redis_down(request: pytest.FixtureRequest) -> str:
    if request.param == "closed port":
        return closed_redis()
    return str(request.getfixturevalue("silent_redis"))


def replica_without_redis(tmp: Path, fake: FakeProvider, redis_url: str, mode: str | None) -> ServeProcess:
    extra = "redis_timeout_s: 0.5" + (f"\n  limits_failure_mode: {mode}" if mode else "")
    config = write_config(tmp, fake, extra=extra)
    args = ("--database-url", f"sqlite:///{tmp / 'legato.db'}", "--redis-url", redis_url)
    serve = ServeProcess(config, *args)
    serve.wait_ready("/healthz")  # /readyz is 503 without Redis
    return serve


CHAT = {"model": "gpt-fake", "messages": PROMPT, "max_tokens": 16}


def test_fail_closed_answers_503_in_the_clients_format(fake: FakeProvider, redis_down: str, tmp_path: Path) -> None:
    serve = replica_without_redis(tmp_path, fake, redis_down, None)  # fail_closed is the default
    try:
        limited = serve.create_key(["chat"], budget_usd=1.0, rpm=100)
        free = serve.create_key(["chat"])
        before = len(fake.requests)
        with serve.client(limited) as c:
            r = c.post("/v1/chat/completions", json=CHAT)
            assert r.status_code == 503, r.text
            assert int(r.headers["retry-after"]) >= 1
            assert r.json()["error"]["code"] == "limits_unavailable"
            assert "Error" not in r.text  # no exception text
            assert "redis" not in r.text.lower()
        anthropic = {"x-api-key": limited, "anthropic-version": "2023-06-01"}
        with httpx.Client(base_url=serve.url, headers=anthropic, timeout=30) as c:
            r = c.post("/v1/messages", json=CHAT)
            assert r.status_code == 503
            body = r.json()
            assert (body["type"], body["error"]["type"]) == ("error", "overloaded_error")
            assert "unavailable" in body["error"]["message"]
        assert len(fake.requests) == before  # nothing reached the provider
        with serve.client(free) as c:  # a key without limits never needs the limits store
            assert c.post("/v1/chat/completions", json=CHAT).status_code == 200
        ready = httpx.get(serve.url + "/readyz", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["checks"]["redis"].startswith("failed")
        assert "unhandled error" not in serve.log()  # every Redis failure was answered as designed
    finally:
        serve.stop()


def test_fail_open_serves_keys_with_limits_uncounted(fake: FakeProvider, tmp_path: Path) -> None:
    serve = replica_without_redis(tmp_path, fake, closed_redis(), "fail_open")
    try:
        key = serve.create_key(["chat"], budget_usd=0.001, rpm=1)
        with serve.client(key) as c:
            for _ in range(3):  # over both its RPM and its budget: neither can be counted
                assert c.post("/v1/chat/completions", json=CHAT).status_code == 200
        with httpx.Client(base_url=serve.url, timeout=30) as browser:  # sign-ins are throttled without Redis too
            codes = [browser.post("/ui/login", data={"key": "lg_" + "x" * 40}).status_code for _ in range(8)]
        assert set(codes) == {401, 429}, codes
        ready = httpx.get(serve.url + "/readyz", timeout=10)  # it serves everything: it stays in rotation
        assert ready.status_code == 200
        assert ready.json()["checks"]["redis"].startswith("failed")
        assert "unhandled error" not in serve.log()  # every Redis failure was answered as designed
    finally:
        serve.stop()


@pytest.mark.postgres
@pytest.mark.redis
def test_a_revoked_key_is_refused_by_the_other_replica_through_pub_sub(
    two_replicas: tuple[ServeProcess, ServeProcess],
) -> None:
    """The key cache lives an hour here: only the invalidation message can refuse the key in time."""
    a, b = two_replicas
    key = a.create_key(["chat"])
    with b.client(key) as c:
        assert c.post("/v1/chat/completions", json=CHAT).status_code == 200  # now cached on B
        with a.client() as admin:
            assert admin.delete(f"/v1/admin/keys/{key[:12]}").status_code == 200
        deadline = time.monotonic() + 10  # far below the hour of the cache
        while (r := c.post("/v1/chat/completions", json=CHAT)).status_code == 200:
            assert time.monotonic() < deadline, "the other replica still accepts the revoked key"
            time.sleep(0.01)
        assert r.status_code == 401
        assert "revoked" in r.json()["error"]["message"]


@pytest.mark.postgres
@pytest.mark.redis
def test_a_key_revoked_with_the_cli_is_refused_by_every_replica(
    two_replicas: tuple[ServeProcess, ServeProcess], postgres_url: str, redis_url: str
) -> None:
    a, b = two_replicas
    key = a.create_key(["chat"])
    with a.client(key) as ca, b.client(key) as cb:
        for c in (ca, cb):
            assert c.post("/v1/chat/completions", json=CHAT).status_code == 200  # cached on both
        config = a.log_path.parent / "legato.yaml"
        cli = [str(Path(sys.executable).parent / "legato"), "keys", "revoke", key[:12], "--config", str(config)]
        done = subprocess.run(
            [*cli, "--database-url", postgres_url, "--redis-url", redis_url],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "SECURITY_MASTER_KEY": "unused", "SECURITY_FAKE_KEY": "unused"},
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "warning" not in done.stderr
        deadline = time.monotonic() + 10  # far below the hour of the cache
        for c in (ca, cb):
            while c.post("/v1/chat/completions", json=CHAT).status_code == 200:
                assert time.monotonic() < deadline, "a replica still accepts the key revoked from the CLI"
                time.sleep(0.01)
