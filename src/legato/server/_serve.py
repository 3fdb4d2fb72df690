"""Running the gateway on uvicorn (uvloop event loop, httptools parser).

Graceful drain on SIGTERM/SIGINT: uvicorn stops accepting connections and waits up
to ``drain_timeout_s`` for in-flight requests (streams included); from the moment
the signal arrives the app answers any new request on a kept-alive connection with
503 ``Connection: close`` and ``/healthz`` reports ``draining``, so a load balancer
moves traffic away. Only then does the lifespan close the store, Redis and the
models, after flushing the spend records.

With ``workers > 1`` uvicorn's supervisor forks worker processes that build the
app from :func:`app_from_env`; only the config path and the command-line overrides
travel through the environment (never a secret: those are ``env:`` references).
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from legato.config import LegatoConfig
from legato.server._settings import ServerSettings, load_settings

__all__ = ["app_from_env", "drain_on_signals", "run"]

_ENV = "LEGATO_SERVE_ARGS"


def app_from_env() -> Any:
    """The app factory used by worker processes (``uvicorn --factory``)."""
    from legato.server._app import create_app

    args = json.loads(os.environ.get(_ENV, "{}"))
    config = LegatoConfig.load(args.pop("config", None))
    settings = load_settings(config, **args)
    _observe(config)
    return create_app(settings, config=config)


def _observe(config: LegatoConfig) -> None:
    """Apply the ``observe:`` section (redaction, JSON logs, tracing) once per process."""
    from legato.observe import ObserveConfig, setup

    setup(ObserveConfig.from_config(config))


@contextmanager
def drain_on_signals(load: Any) -> Iterator[None]:
    """While open, SIGTERM/SIGINT first mark ``load`` as draining, then reach uvicorn's own handler.

    Installed from the app's lifespan, which runs after uvicorn installed its handlers,
    so it works the same in one process and in each worker of ``--workers N``.
    Outside the main thread (an embedded server) signals are not ours to take.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Any] = {}

    def handler(sig: int, frame: FrameType | None) -> None:
        load.drain()
        before = previous.get(sig)
        if callable(before):
            before(sig, frame)

    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for number, before in previous.items():
            signal.signal(number, before)


def _uvicorn_options(settings: ServerSettings) -> dict[str, Any]:
    import importlib.util

    return {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        "http": "httptools" if importlib.util.find_spec("httptools") else "h11",
        "lifespan": "on",
        "timeout_graceful_shutdown": settings.drain_timeout_s,
        "log_level": settings.log_level,
        "access_log": False,
        "server_header": False,
        "timeout_keep_alive": 15,
    }


def run(settings: ServerSettings, *, config: LegatoConfig, config_path: str | None, overrides: dict[str, Any]) -> None:
    """Serve until stopped. Blocks."""
    import uvicorn

    if settings.workers <= 1:
        from legato.server._app import create_app

        _observe(config)
        uvicorn.run(create_app(settings, config=config), **_uvicorn_options(settings))
        return
    os.environ[_ENV] = json.dumps({"config": config_path, **{k: v for k, v in overrides.items() if v is not None}})
    uvicorn.run(
        "legato.server._serve:app_from_env", factory=True, workers=settings.workers, **_uvicorn_options(settings)
    )
