"""``legato serve --workers N``: uvicorn's supervisor, with one listening socket per
worker and every stop signal passed on.

uvicorn's own multi-process mode has every worker accept from one shared socket. The
worker that wakes first accepts every connection waiting (uvloop accepts until the
backlog is empty), so a burst of new connections, such as a balancer opening its pool,
lands on one worker while the others idle: with 64 connections opened at once, one of
two workers served 96% of the requests (``bench/servers.py``). Here each worker gets
its own socket bound to the same port with ``SO_REUSEPORT``, and the kernel spreads
new connections over the sockets by a hash of their addresses, evenly however they
arrive. A socket outlives its worker (the supervisor holds it): a replacement worker
takes over the same socket and the connections waiting in it. Elsewhere than on Linux,
where ``SO_REUSEPORT`` does not balance (or does not exist), the workers share one
socket as in uvicorn.

uvicorn's supervisor also passes on only the first SIGTERM/SIGINT and then waits for
its workers, deaf to more; :class:`Supervisor` passes on every later one, so a second
signal ends the drain window (:func:`legato.server._serve.drain_on_signals`) with
``--workers N`` as it does in one process.

Both rely on uvicorn's ``Multiprocess`` internals (``processes``, ``signal_queue``,
``Process.process``, the shape of ``keep_subprocess_alive``); a uvicorn upgrade must
run ``tests/e2e/test_serve_workers.py``.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys

from uvicorn.config import STARTUP_FAILURE, Config
from uvicorn.supervisors.multiprocess import Multiprocess, Process

__all__ = ["Supervisor", "reuseport_sockets", "serve_workers"]

log = logging.getLogger("uvicorn.error")

_STOP = (signal.SIGTERM, signal.SIGINT)


def reuseport_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` TCP sockets bound to ``host:port`` with ``SO_REUSEPORT`` (port 0: the
    port the first one got). Raises OSError when the address cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            port = sock.getsockname()[1]
            sock.set_inheritable(True)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class Supervisor(Multiprocess):
    """Worker ``i`` serves ``sockets[i]`` (and its replacement, the same socket). A
    restart of every worker (SIGHUP, uvicorn's own code) gives each new worker all the
    sockets: still served, no longer spread."""

    _stops = 0

    def init_processes(self) -> None:
        for sock in self.sockets:
            process = Process(self.config, [sock])
            process.start()
            self.processes.append(process)

    def keep_subprocess_alive(self) -> None:
        """uvicorn's, replacing a dead or hung worker with one on the same socket."""
        for idx, process in enumerate(self.processes):
            if self.should_exit.is_set() or process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()
            process.join()
            if process.exitcode == STARTUP_FAILURE:  # the app or the config is broken: a restart fails alike
                log.error("Child process [%s] failed to start, stopping the parent process.", process.pid)
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            log.info("Child process [%s] died", process.pid)
            self.processes[idx] = Process(self.config, [self.sockets[idx]])
            self.processes[idx].start()

    def handle_signals(self) -> None:
        self._stops += sum(1 for sig in self.signal_queue if sig in _STOP)
        super().handle_signals()

    def terminate_all(self) -> None:
        super().terminate_all()  # the first signal: each worker opens its drain window
        for _ in range(self._stops - 1):  # more arrived at once: each skips the rest of it
            self._signal_workers()

    def join_all(self) -> None:
        for worker in self.processes:
            while worker.process.is_alive():
                worker.process.join(0.2)
                for sig in tuple(self.signal_queue):
                    self.signal_queue.remove(sig)
                    if sig in _STOP:
                        self._signal_workers()

    def _signal_workers(self) -> None:
        for worker in self.processes:
            if worker.process.is_alive() and worker.pid is not None:
                os.kill(worker.pid, signal.SIGTERM)


def serve_workers(config: Config) -> None:
    """Serve ``config.workers`` processes on ``config.host:config.port`` until stopped. Blocks."""
    # A worker that does not answer the supervisor's ping within this is killed and
    # replaced; uvicorn's default (5 s) killed workers still importing on a busy host.
    config.timeout_worker_healthcheck = 30
    try:
        if sys.platform == "linux":
            sockets = reuseport_sockets(config.host, config.port, config.workers)
        else:  # SO_REUSEPORT spreads connections only on Linux: one socket shared, as uvicorn does
            sockets = [config.bind_socket()] * config.workers
    except OSError as exc:  # as uvicorn does for one process: the reason, and its start-up failure code
        log.error("cannot listen on %s:%d: %s", config.host, config.port, exc)
        raise SystemExit(STARTUP_FAILURE) from None
    log.info("Uvicorn running on http://%s:%d with %d workers", config.host, sockets[0].getsockname()[1],
             config.workers)  # fmt: skip
    try:
        Supervisor(config, sockets=sockets).run()
    finally:
        for sock in sockets:
            sock.close()
