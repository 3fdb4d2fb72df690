"""The web dashboard: runs, live run graphs and timelines, model health, spend, journal.

Mount it on the gateway app (or any FastAPI app)::

    from legato.server.ui import DashboardSources, mount_dashboard
    mount_dashboard(app, DashboardSources(store=run_store, admin_key=master_key))

Pages are rendered on the server; live updates arrive over Server-Sent Events; no
build step and no JavaScript framework.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from legato.server.ui._app import DashboardSources, dashboard_router
from legato.server.ui._live import LiveEvents
from legato.server.ui._throttle import LoginThrottle

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["DashboardSources", "LiveEvents", "LoginThrottle", "dashboard_router", "mount_dashboard", "pipeline_graph"]


def mount_dashboard(app: FastAPI, sources: DashboardSources, *, path: str = "/ui") -> None:
    """Serve the dashboard under ``path`` (``/ui``) of ``app``."""
    app.include_router(dashboard_router(sources, prefix=path))


def pipeline_graph(pipeline: Any) -> dict[str, list[str]]:
    """``{step: [dependencies]}`` of a :class:`legato.Pipeline`, for ``DashboardSources.graphs``."""
    plan = pipeline.compile()
    return {name: sorted(step.deps) for name, step in plan.steps.items()}
