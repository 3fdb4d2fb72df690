"""``legato serve``: the gateway on uvicorn."""

from __future__ import annotations

from pathlib import Path

import typer

from legato.cli._app import app
from legato.cli._console import fail


@app.command()
def serve(
    config: Path | None = typer.Option(
        None, "--config", "-c", help="legato.yaml (default: $LEGATO_CONFIG, ./legato.yaml)."
    ),
    host: str | None = typer.Option(None, help="Interface to bind (default 127.0.0.1)."),
    port: int | None = typer.Option(None, help="Port (default 8080)."),
    database_url: str | None = typer.Option(
        None, "--database-url", help="Run store and keys: sqlite:///PATH or postgresql://HOST/DB."
    ),
    redis_url: str | None = typer.Option(None, "--redis-url", help="Redis for limits and budgets across replicas."),
    workers: int | None = typer.Option(None, min=1, help="Worker processes (default 1)."),
    log_level: str | None = typer.Option(None, "--log-level", help="uvicorn log level."),
    no_execute: bool = typer.Option(
        False, "--no-execute", help="Only accept and enqueue runs; `legato worker` processes execute them."
    ),
) -> None:
    """Serve the OpenAI- and Anthropic-compatible gateway, the runs API and the admin API."""
    from legato.config import LegatoConfig
    from legato.errors import ConfigError
    from legato.server._catalog import check_models
    from legato.server._serve import run
    from legato.server._settings import load_settings

    overrides = {
        "host": host,
        "port": port,
        "database_url": database_url,
        "redis_url": redis_url,
        "workers": workers,
        "log_level": log_level,
        "execute_runs": False if no_execute else None,
    }
    try:
        cfg = LegatoConfig.load(config)
        settings = load_settings(cfg, **overrides)
        warnings = check_models(cfg, settings.models)
    except ConfigError as exc:
        raise fail(str(exc), 2) from None
    for warning in warnings:
        typer.echo(f"warning: {warning}; it will not be served", err=True)
    typer.echo(f"legato gateway on http://{settings.host}:{settings.port} (workers: {settings.workers})", err=True)
    if settings.workers > 1 and not settings.redis_url:
        typer.echo(
            "warning: without --redis-url each worker counts rate limits and budgets on its own; "
            "set --redis-url to share them",
            err=True,
        )
    run(settings, config=cfg, config_path=str(config) if config else None, overrides=overrides)
