"""``legato models health``: the state of every deployment of every model group.

Builds the groups of ``legato.yaml`` and, unless ``--no-probe``, sends each
deployment one cheap probe (a one-token chat) first, so the table shows what a
fresh router would learn: healthy, unhealthy (credentials rejected), ejected
(failing), unavailable (its API key is not set). Exit code 0 when every
deployment is healthy, 1 when some are not, 2 for an invalid configuration.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from legato.cli._console import fail, new_console, new_table
from legato.cli._loop import run_loop
from legato.cli.models import models_app

__all__ = ["health"]


@models_app.command("health")
def health(
    config: Path | None = typer.Option(
        None, "--config", "-c", help="legato.yaml to read (default: $LEGATO_CONFIG or ./legato.yaml)."
    ),
    group: list[str] = typer.Option([], "--group", "-g", help="Only these groups (repeatable)."),
    probe: bool = typer.Option(True, "--probe/--no-probe", help="Probe each deployment before reporting."),
    timeout: float = typer.Option(10.0, "--timeout", min=0.1, help="Seconds each probe may take."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Show the health of every deployment of the model groups in legato.yaml."""

    from legato.config import LegatoConfig
    from legato.errors import ConfigError

    try:
        rows = run_loop(_collect, LegatoConfig.load(config), group, probe, timeout)
    except ConfigError as exc:
        raise fail(str(exc), 2) from None
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        _print_table(rows)
    if not rows:
        typer.echo("no model groups are configured (add a 'groups:' section to legato.yaml)", err=True)
    if any(r["state"] != "healthy" for r in rows):
        raise typer.Exit(1)


async def _collect(config: Any, only: list[str], probe: bool, timeout: float) -> list[dict[str, Any]]:
    from legato.errors import ConfigError
    from legato.models import model_groups
    from legato.routing import HealthChecker, ProbeResult

    groups = model_groups(config)
    unknown = sorted(set(only) - set(groups.names()))
    if unknown:
        raise ConfigError(f"unknown group(s) {', '.join(unknown)}; configured: {', '.join(groups.names()) or 'none'}")
    routers = [r for r in (groups.router(n) for n in (only or groups.names())) if r is not None]
    probes: dict[tuple[str, str], ProbeResult] = {}
    try:
        if probe and routers:
            checker = HealthChecker(routers, interval=groups.routing.health_check.interval, timeout=timeout)
            probes = {(p.group, p.deployment): p for p in await checker.check_once()}
        rows = []
        for router in routers:
            for h in router.health():
                result = probes.get((h.group, h.deployment))
                rows.append(
                    {
                        "group": h.group,
                        "deployment": h.deployment,
                        "model": h.model,
                        "state": h.state,
                        "probe_ms": None if result is None else round(result.latency * 1000, 1),
                        "error": h.last_error if h.state != "healthy" else None,
                    }
                )
        return rows
    finally:
        await groups.aclose()


def _print_table(rows: list[dict[str, Any]]) -> None:

    table = new_table("group", "deployment", "model", "state", "probe ms", "error")
    colours = {"healthy": "green", "open": "red", "unhealthy": "red", "unavailable": "yellow"}
    for r in rows:
        colour = colours.get(r["state"], "yellow")
        table.add_row(
            r["group"],
            r["deployment"],
            r["model"],
            f"[{colour}]{r['state']}[/{colour}]",
            "-" if r["probe_ms"] is None else f"{r['probe_ms']:g}",
            escape(r["error"] or ""),
        )
    new_console().print(table)
