"""Gateways for tests, in one place: a real ``legato serve`` process
(:class:`ServeProcess`) or an app served by uvicorn in a thread (:func:`serve_in_thread`).

The process runs the installed CLI with a ``legato.yaml`` written by the test; its
output (uvicorn and legato logs, the access log) goes to a file the test can read.
Secrets reach it through ``env:`` references, as in production: ``SECURITY_FAKE_KEY``
and ``SECURITY_MASTER_KEY`` are always set, ``env`` adds others. Conftest files and
tests import it as ``_serve`` (the tests directory is on ``sys.path``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx

MASTER = "mk-security-0123456789abcdef"
FAKE_KEY = "sk-fake-provider-secret-0123"


Served = TypeVar("Served", bound="ServeProcess")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServeProcess:
    """``legato serve --config CONFIG`` until :meth:`stop`."""

    def __init__(self, config: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = config.parent / f"serve-{self.port}.log"
        full_env = {**os.environ, "SECURITY_FAKE_KEY": FAKE_KEY, "SECURITY_MASTER_KEY": MASTER, **(env or {})}
        cmd = [str(Path(sys.executable).parent / "legato"), "serve", "--config", str(config), "--port", str(self.port)]
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [*cmd, *args], env=full_env, cwd=config.parent, stdout=self._log, stderr=subprocess.STDOUT
        )

    def wait_ready(self, path: str = "/readyz") -> None:
        """Until ``path`` answers 200 (``/healthz`` for a replica that is meant to stay not ready)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"legato serve exited: {self.log()}")
            try:
                if httpx.get(self.url + path, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"legato serve did not become ready: {self.log()}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def client(
        self, key: str | None = MASTER, headers: Mapping[str, str] | None = None, **options: Any
    ) -> httpx.Client:
        """A client of the gateway with ``key`` (default: the master key); ``options`` go to httpx."""
        auth = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers={**auth, **(headers or {})}, timeout=30, **options)

    def create_key(self, scopes: list[str], name: str = "security", **limits: Any) -> str:
        with self.client() as c:
            r = c.post("/v1/admin/keys", json={"name": name, "scopes": scopes, **limits})
            assert r.status_code == 201, r.text
            return str(r.json()["key"])

    def stop(self) -> None:
        stop_served(self.proc)
        self._log.close()


def stop_served(proc: subprocess.Popen[bytes]) -> None:
    """Stop a ``legato serve`` (or ``legato worker``) process as an operator's second
    SIGTERM would: the first opens the drain window (``drain_delay_s``, 5 s by default),
    the second skips the rest of it; in-flight work still finishes and the lifespan
    still closes the store. Tests of the window itself send their own signals."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(0.5)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def serving(
    config: Path, *args: str, env: dict[str, str] | None = None, ready: str = "/readyz"
) -> Iterator[ServeProcess]:
    """A :class:`ServeProcess` once ``ready`` answers 200, stopped on exit."""
    with running(ServeProcess(config, *args, env=env), ready) as served:
        yield served


@contextmanager
def running(process: Served, ready: str = "/readyz") -> Iterator[Served]:
    """A started process (a :class:`ServeProcess` or a subclass) once ``ready`` answers 200,
    stopped on exit, also when it never became ready."""
    try:
        process.wait_ready(ready)
        yield process
    finally:
        process.stop()


@contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port from a background thread; yield its URL."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", loop="asyncio")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="gateway", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the gateway did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
