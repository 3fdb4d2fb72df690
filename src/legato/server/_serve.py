"""Running the gateway on uvicorn (uvloop event loop, httptools parser).

Graceful drain on SIGTERM/SIGINT, in two steps. First the drain window
(``drain_delay_s``): ``/readyz`` answers 503 so that a load balancer stops sending
new connections, while the listener keeps accepting and every request is still
served (with ``Connection: close``, so kept-alive clients reconnect elsewhere). Then
uvicorn stops accepting and waits up to ``drain_timeout_s`` for in-flight requests
(streams included); a new request on a kept-alive connection now gets 503
``Connection: close``. Only then does the lifespan close the store, Redis and the
models, after flushing the spend records.

The HTTP protocol is uvicorn's, with the guards of :mod:`legato.server._conn`
(header deadline, per-client connection cap); ``idle_timeout_s`` is uvicorn's
keep-alive timeout.

With ``workers > 1`` a supervisor (:mod:`legato.server._workers`) starts the worker
processes, each on its own ``SO_REUSEPORT`` socket of the port; each builds the app
from :func:`app_from_env` (only the config path and the command-line overrides travel
through the environment, never a secret: those are ``env:`` references) and runs its
own drain window on SIGTERM.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from legato.config import LegatoConfig
from legato.server._protect import Load, Phase
from legato.server._settings import ServerSettings, load_settings

__all__ = ["app_from_env", "drain_on_signals", "run", "settle_heap"]

_ENV = "LEGATO_SERVE_ARGS"
_YOUNG_THRESHOLD = 10_000  # allocations between collections of the youngest generation (CPython: 700)
log = logging.getLogger("legato.server")


def app_from_env() -> Any:
    """The app factory used by worker processes (``uvicorn --factory``)."""
    from legato.server._app import create_app

    args = json.loads(os.environ.get(_ENV, "{}"))
    config = LegatoConfig.load(args.pop("config", None))
    settings = load_settings(config, **args)
    _observe(config)
    return _owning_its_process(create_app(settings, config=config))


def _owning_its_process(app: Any) -> Any:
    """``app`` as the only app of its process: its lifespan may settle the heap (:func:`settle_heap`)."""
    app.state.owns_process = True
    return app


def settle_heap() -> None:
    """Once start-up is over, take what it loaded out of the cyclic garbage collector's sight.

    A started gateway holds about a million long-lived objects (modules, schemas,
    routes, models). Each full collection walked all of them: on a busy worker 15
    full collections in two minutes took 100-240 ms each, every one a stall of the
    event loop and the largest part of the gateway's p99 latency. ``gc.freeze()``
    moves every object alive now to a permanent generation the collector skips (they
    are never freed, which they would not be anyway), so a collection walks only what
    requests allocated since. Only for the process ``legato serve`` owns (decision 0048): an app
    embedded in another program, or in a test, leaves that program's heap alone.

    The youngest generation is also collected after 10,000 allocations instead of
    CPython's 700. A call in flight lives for the model's whole answer (tens of
    milliseconds to seconds), so at 700 every in-flight call's coroutines, futures
    and buffers were caught by collections, promoted twice, and reached the oldest
    generation, whose full collection then ran about once a second under load and
    walked them all (40,000-50,000 objects, 12-28 ms a pause) to free nothing: they
    die by reference counting. With the larger threshold most of them die before a
    collection sees them. In the overload phase of ``bench/gateway.py`` (about 30 s, one worker) the
    collector's time fell from about 2.3 s to 0.3 s and the full collections under
    load from 28 to none; the youngest generation's pauses grew from under 4 ms to
    5-13 ms, a few a second.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def _observe(config: LegatoConfig) -> None:
    """Apply the ``observe:`` section (redaction, JSON logs, tracing) once per process."""
    from legato.observe import ObserveConfig, setup

    setup(ObserveConfig.from_config(config))


@contextmanager
def drain_on_signals(load: Load, *, delay_s: float) -> Iterator[None]:
    """While open, the first SIGTERM/SIGINT starts the drain window: ``load`` reports
    not ready while requests are still served, and ``delay_s`` later the signal reaches
    uvicorn's own handler (stop accepting, finish in-flight work). A second signal
    during the window skips the rest of it.

    Installed from the app's lifespan, which runs after uvicorn installed its handlers,
    so it works the same in one process and in each worker of ``--workers N``.
    Outside the main thread (an embedded server) signals are not ours to take.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()  # uvicorn's loop: the timer is set from the signal handler
    previous: dict[int, Any] = {}
    timers: list[asyncio.TimerHandle] = []

    def stop(sig: int, frame: FrameType | None) -> None:
        for timer in timers:
            timer.cancel()
        timers.clear()
        load.stop()
        before = previous.get(sig)
        if callable(before):
            before(sig, frame)

    def later(sig: int) -> None:
        timers.append(loop.call_later(delay_s, stop, sig, None))

    def handler(sig: int, frame: FrameType | None) -> None:
        if load.phase is Phase.SERVING and delay_s > 0:
            log.info("draining: not ready from now, stopping in %gs", delay_s)
            load.drain()
            loop.call_soon_threadsafe(later, sig)
        else:
            stop(sig, frame)

    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for timer in timers:
            timer.cancel()
        for number, before in previous.items():
            signal.signal(number, before)


def _uvicorn_options(settings: ServerSettings) -> dict[str, Any]:
    import importlib.util

    from legato.server._conn import ConnectionGuard, protocol_factory

    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    guard = ConnectionGuard(
        header_timeout_s=settings.header_timeout_s, max_connections_per_client=settings.max_connections_per_client
    )
    return {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        "http": protocol_factory(http, guard),
        "lifespan": "on",
        "timeout_graceful_shutdown": settings.drain_timeout_s,
        "log_level": settings.log_level,
        "access_log": False,
        "server_header": False,
        "timeout_keep_alive": settings.idle_timeout_s,
    }


def run(settings: ServerSettings, *, config: LegatoConfig, config_path: str | None, overrides: dict[str, Any]) -> None:
    """Serve until stopped. Blocks."""
    import uvicorn

    if settings.workers <= 1:
        from legato.server._app import create_app

        _observe(config)
        uvicorn.run(_owning_its_process(create_app(settings, config=config)), **_uvicorn_options(settings))
        return
    os.environ[_ENV] = json.dumps({"config": config_path, **{k: v for k, v in overrides.items() if v is not None}})
    from legato.server._workers import serve_workers

    options = _uvicorn_options(settings)
    serve_workers(
        uvicorn.Config("legato.server._serve:app_from_env", factory=True, workers=settings.workers, **options)
    )
