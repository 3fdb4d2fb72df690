"""``legato mcp``: the MCP server over stdio (journal and run tools for agents)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from legato.cli._app import app
from legato.cli._console import fail, new_console
from legato.cli._loop import run_loop
from legato.cli.runs import DATABASE_URL_HELP, open_store

if TYPE_CHECKING:
    from legato.engine import Pipeline

__all__ = ["mcp"]

_err = new_console(stderr=True)


def _pipelines(paths: list[Path], config: Path | None) -> dict[str, Pipeline]:
    from legato.config import LegatoConfig
    from legato.errors import ConfigError, SpecError
    from legato.spec import load_pipeline

    try:
        cfg = LegatoConfig.load(config)
        if not paths:
            if cfg.raw("pipelines") is None:
                return {}
            from legato.server._runs import load_pipelines  # the same `pipelines:` section as `legato serve`

            return load_pipelines(cfg)
        found: dict[str, Pipeline] = {}
        for path in paths:
            files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")]) if path.is_dir() else [path]
            for f in files:
                pipeline = load_pipeline(f, config=cfg)
                found[pipeline.name] = pipeline
        return found
    except (ConfigError, SpecError, OSError) as exc:
        raise fail(str(exc), 2) from None


@app.command("mcp")
def mcp(
    pipeline: list[Path] = typer.Option(
        [], "--pipeline", "-p", help="Pipeline YAML file or directory to serve (repeatable; default: legato.yaml)."
    ),
    database_url: str | None = typer.Option(None, "--database-url", help=DATABASE_URL_HELP),
    config: Path | None = typer.Option(None, "--config", help="legato.yaml (default: $LEGATO_CONFIG, ./legato.yaml)."),
) -> None:
    """Serve the journal and run tools over MCP (stdio), for agents and MCP clients."""

    from legato.mcp import create_mcp_server

    served = _pipelines(pipeline, config)

    async def main() -> Any:
        async with open_store(database_url, create=True, migrate_in_child=True) as store:
            server = create_mcp_server(store, pipelines=served)
            await server.run_stdio_async()

    run_loop(main)
