"""The web dashboard: runs, live run graphs and timelines, model health, spend, journal.

Mount it on the gateway app (or any FastAPI app)::

    from legato.server.ui import DashboardSources, mount_dashboard
    mount_dashboard(app, DashboardSources(store=run_store, admin_key=master_key))

Pages are rendered on the server; live updates arrive over Server-Sent Events; no
build step and no JavaScript framework. Like the API's, the dashboard's routes are
module-level routers; a request finds what the dashboard reads from in the app's
state (one dashboard per app).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from legato.server.ui._app import router
from legato.server.ui._dashboard import Dashboard, DashboardSources
from legato.server.ui._live import LiveEvents
from legato.server.ui._throttle import LoginThrottle

if TYPE_CHECKING:
    from fastapi import FastAPI

    from legato.engine import Pipeline

__all__ = [
    "DashboardSources",
    "LiveEvents",
    "LoginThrottle",
    "include_dashboard",
    "mount_dashboard",
    "pipeline_graph",
    "serve_dashboard",
]


def mount_dashboard(app: FastAPI, sources: DashboardSources, *, path: str = "/ui") -> None:
    """Serve the dashboard under ``path`` (``/ui``) of ``app``, reading from ``sources``."""
    include_dashboard(app, path)
    serve_dashboard(app, sources, path=path)


def include_dashboard(app: FastAPI, path: str = "/ui") -> None:
    """The dashboard's routes under ``path``; they answer once :func:`serve_dashboard`
    has given the app its sources (the gateway does so in its lifespan)."""
    app.include_router(router, prefix=path, include_in_schema=False)


def serve_dashboard(app: FastAPI, sources: DashboardSources, *, path: str = "/ui") -> None:
    """What the dashboard routes of ``app`` (included under ``path``) read from."""
    app.state.dashboard = Dashboard(sources, path)


def pipeline_graph(pipeline: Pipeline) -> dict[str, list[str]]:
    """``{step: [dependencies]}`` of a :class:`legato.Pipeline`, for ``DashboardSources.graphs``."""
    plan = pipeline.compile()
    return {name: sorted(step.deps) for name, step in plan.steps.items()}
