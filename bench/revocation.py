"""How fast a revoked API key is refused by another gateway replica.

Two ``legato serve`` processes share PostgreSQL and Redis, with a key cache of an
hour (``key_cache_ttl_s: 3600``), so what is measured is the Redis pub/sub
invalidation, never the cache expiring. Each trial creates a key, uses it on
replica B (B now has it cached), revokes it through replica A's admin API, then
asks B with that key in a tight loop (``GET /v1/models``, which authenticates and
calls no provider) until B answers 401. Measured from the moment A's ``DELETE``
returned (the revocation committed and announced) to B's first 401; the polling
adds up to one request's time (about a millisecond on loopback). Prints p50/p99/max
and writes bench/results/revocation.json.

    python bench/revocation.py [--trials 100]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import httpx

from _postgres import pg_database, summary

RESULTS = Path(__file__).parent / "results" / "revocation.json"
REDIS = "redis://127.0.0.1:6379/0"
MASTER = "mk-bench-revocation-0123456789"

CONFIG = """\
models:
  gpt-fake:
    provider: openai
    model: gpt-fake
    base_url: http://127.0.0.1:9/v1
    api_key: env:BENCH_MASTER_KEY
server:
  master_key: env:BENCH_MASTER_KEY
  redis_prefix: "{prefix}"
  key_cache_ttl_s: 3600
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(config: Path, database_url: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cmd = [str(Path(sys.executable).parent / "legato"), "serve", "--config", str(config), "--port", str(port)]
    cmd += ["--database-url", database_url, "--redis-url", REDIS, "--log-level", "warning"]
    env = {**os.environ, "BENCH_MASTER_KEY": MASTER}
    proc = subprocess.Popen(cmd, env=env, cwd=config.parent, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("legato serve did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def trial(a: httpx.Client, b: httpx.Client) -> float:
    created = a.post("/v1/admin/keys", json={"name": "bench", "scopes": ["chat"]})
    secret = created.json()["key"]
    auth = {"Authorization": f"Bearer {secret}"}
    assert b.get("/v1/models", headers=auth).status_code == 200  # cached on B from here on
    assert a.delete(f"/v1/admin/keys/{secret[:12]}").status_code == 200
    revoked = time.perf_counter()
    while b.get("/v1/models", headers=auth).status_code == 200:
        if time.perf_counter() - revoked > 30:
            raise RuntimeError("replica B kept accepting the revoked key for 30 s")
    return time.perf_counter() - revoked


def measure(trials: int, database_url: str, tmp: Path) -> list[float]:
    prefix = f"legato-bench:{uuid.uuid4().hex[:8]}:"
    (tmp / "legato.yaml").write_text(CONFIG.format(prefix=prefix))
    pa, url_a = start(tmp / "legato.yaml", database_url)  # the first one migrates the database
    pb, url_b = start(tmp / "legato.yaml", database_url)
    headers = {"Authorization": f"Bearer {MASTER}"}
    try:
        with httpx.Client(base_url=url_a, headers=headers) as a, httpx.Client(base_url=url_b) as b:
            trial(a, b)  # warm-up: connections, first queries
            return [trial(a, b) for _ in range(trials)]
    finally:
        stop(pa)
        stop(pb)
        import redis

        r = redis.Redis.from_url(REDIS)
        names = list(r.scan_iter(match=prefix + "*"))
        if names:
            r.delete(*names)
        r.close()


def main(trials: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="legato-bench-"))
    name = f"legato_bench_{uuid.uuid4().hex[:8]}"
    anyio.run(pg_database, "create", name)
    try:
        samples = measure(trials, f"postgresql://postgres@127.0.0.1:5432/{name}", tmp)
    finally:
        anyio.run(pg_database, "drop", name)
    return {
        "trials": trials,
        "key_cache_ttl_s": 3600,
        "cpus": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
        "revoked_to_refused": summary(samples),
    }


def report(doc: dict[str, Any]) -> None:
    print(
        f"revocation on replica A -> 401 on replica B, {doc['trials']} trials, key cache {doc['key_cache_ttl_s']} s "
        f"({doc['cpus']} CPUs, load average {doc['load_average_1m']:.1f})"
    )
    s = doc["revoked_to_refused"]
    print(f"{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'mean ms':>9}")
    print(f"{s['p50_ms']:>9.1f}{s['p99_ms']:>9.1f}{s['max_ms']:>9.1f}{s['mean_ms']:>9.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=100)
    args = parser.parse_args()
    result = main(args.trials)
    report(result)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
