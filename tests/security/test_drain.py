"""The drain window of a real ``legato serve``, as a load balancer's poller sees it.

On SIGTERM, ``/readyz`` turns 503 at once while the listener keeps accepting and
requests are still served (with ``Connection: close``); only after ``drain_delay_s``
does the port close, and a request in flight at that moment still completes.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from _serve import ServeProcess
from legato.testing import FakeProvider, Reply

pytestmark = pytest.mark.slow

CONFIG = """\
server:
  master_key: env:SECURITY_MASTER_KEY
  drain_delay_s: {delay}
  drain_timeout_s: 20
models:
  gpt-fake:
    provider: openai
    model: gpt-fake
    base_url: "{base_url}"
    api_key: env:SECURITY_FAKE_KEY
"""

CHAT = {"model": "gpt-fake", "messages": [{"role": "user", "content": "hello"}]}


@dataclass
class Seen:
    """One poll: the readiness answer (or "refused"), and a chat call on a new connection."""

    ready: str
    chat: str
    close: bool


def poll(proc: ServeProcess, key: str, stop: threading.Event, seen: list[Seen]) -> None:
    """A load balancer's view: every poll on a new connection, until the port is closed."""
    while not stop.is_set():
        try:
            r = httpx.get(proc.url + "/readyz", timeout=10)
            ready = f"{r.status_code} {r.json()['status']}"
            c = httpx.post(proc.url + "/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}"})
            seen.append(Seen(ready, str(c.status_code), c.headers.get("connection") == "close"))
        except httpx.ConnectError:
            seen.append(Seen("refused", "refused", True))
            return
        except httpx.TransportError:  # the port closed between the two calls
            continue
        time.sleep(0.05)


@contextmanager
def serving(tmp: Path, delay: float) -> Iterator[tuple[ServeProcess, FakeProvider, str]]:
    with FakeProvider(seed=0).in_thread() as fake:
        (tmp / "legato.yaml").write_text(CONFIG.format(base_url=fake.openai_base_url, delay=delay))
        proc = ServeProcess(tmp / "legato.yaml", "--database-url", f"sqlite:///{tmp / 'gateway.db'}")
        try:
            proc.wait_ready()
            yield proc, fake, proc.create_key(["chat"])
        finally:
            proc.stop()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ServeProcess, FakeProvider, str]]:
    with serving(tmp_path, delay=2) as running:
        yield running


def test_sigterm_opens_a_drain_window_a_poller_can_see(served: tuple[ServeProcess, FakeProvider, str]) -> None:
    proc, fake, key = served
    fast = fake.default
    fake.responder = lambda request: Reply(text="slow but complete", delay=3) if "slow" in str(request.body) else fast
    slow: list[httpx.Response] = []

    def call_slow() -> None:
        body = {**CHAT, "messages": [{"role": "user", "content": "slow"}]}
        with proc.client(key) as c:
            slow.append(c.post("/v1/chat/completions", json=body))

    seen: list[Seen] = []
    stop = threading.Event()
    poller = threading.Thread(target=poll, args=(proc, key, stop, seen))
    poller.start()
    while not seen:
        time.sleep(0.02)
    in_flight = threading.Thread(target=call_slow)
    in_flight.start()
    while not any("slow" in str(r.body) for r in fake.requests):
        time.sleep(0.02)
    proc.proc.send_signal(signal.SIGTERM)
    poller.join(60)
    stop.set()
    in_flight.join(60)

    phases = [s.ready for s in seen]
    assert phases[0] == "200 ready"
    assert phases[-1] == "refused"
    window = [s for s in seen if s.ready == "503 draining"]
    assert window, f"no drain window was observed: {phases}"
    # Still served during the window, asking clients to reconnect elsewhere. The last poll
    # may race the end of the window: then it is refused with 503 + Connection: close.
    assert any(s.chat == "200" for s in window)
    assert all(s.chat == "200" for s in window[:-1])
    assert window[-1].chat in ("200", "503")
    assert all(s.close for s in window)
    first = phases.index("503 draining")
    assert all(p == "503 draining" for p in phases[first:-1])  # never ready again once draining
    assert slow[0].status_code == 200
    assert slow[0].json()["choices"][0]["message"]["content"] == "slow but complete"
    assert proc.proc.wait(30) in (0, -signal.SIGTERM)


def test_a_second_signal_ends_the_window_at_once(tmp_path: Path) -> None:
    """With a two-minute window, the process still exits promptly after a second SIGTERM."""
    with serving(tmp_path, delay=120) as (proc, _, _):
        proc.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while (r := httpx.get(proc.url + "/readyz", timeout=10)).status_code == 200:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert r.json()["status"] == "draining"
        assert httpx.get(proc.url + "/healthz", timeout=10).json() == {"status": "draining"}
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(30) in (0, -signal.SIGTERM)
        with pytest.raises(httpx.ConnectError):
            httpx.get(proc.url + "/healthz", timeout=5)
