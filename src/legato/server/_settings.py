"""Typed gateway settings: the ``server:`` section of ``legato.yaml`` plus CLI flags.

Flags given on the command line override the file (:meth:`ServerSettings.with_overrides`);
secrets are written ``env:NAME`` in the file and resolved by the config loader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from legato.config import LegatoConfig

__all__ = ["AdmissionSettings", "DashboardSettings", "SSRFSettings", "ServerSettings", "load_settings"]


class SSRFSettings(BaseModel):
    """Which user-supplied URLs the gateway lets through.

    Private, loopback, link-local, carrier-grade NAT, multicast, reserved and cloud
    metadata addresses are refused unless the host or network is allow-listed here.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    allow_hosts: list[str] = Field(default_factory=list, description="Host names let through as they are.")
    allow_networks: list[str] = Field(default_factory=list, description="CIDR networks let through, e.g. 10.1.0.0/16.")
    schemes: list[str] = Field(default_factory=lambda: ["https", "http"])
    resolve_dns: bool = Field(True, description="Resolve host names and check every address they resolve to.")
    max_redirects: int = Field(5, ge=0, le=20)


class AdmissionSettings(BaseModel):
    """Adaptive admission in front of the model routes (see :mod:`legato.server._admission`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    initial_limit: int = Field(128, ge=1, description="Model calls admitted at once before any latency is observed.")
    min_limit: int = Field(8, ge=1, description="The limit never shrinks below this.")
    max_limit: int | None = Field(None, ge=1, description="The limit never grows above this (default max_in_flight).")
    tolerance: float = Field(1.5, ge=1.0, description="Latency over the baseline (a factor) before the limit shrinks.")
    slack_s: float = Field(
        0.005,
        ge=0,
        description="...plus this much (seconds): the gateway's own share of a call is a fraction of a "
        "millisecond, and a few milliseconds of jitter are not queueing.",
    )
    smoothing: float = Field(0.5, gt=0, le=1, description="How much of each computed decrease is applied at once.")
    window_s: float = Field(0.25, gt=0, description="Latency samples are averaged over windows at least this long...")
    window_samples: int = Field(10, ge=1, description="...holding at least this many samples.")
    baseline_s: float = Field(10.0, gt=0, description="The latency baseline follows a lasting change over about this.")
    baseline_cap: float = Field(
        1.2, ge=1.0, description="The baseline never exceeds this many times the no-load latency (the floor)."
    )
    floor_s: float = Field(
        30.0, gt=0, description="When latency stays above the floor this long, one window at min_limit re-measures it."
    )
    max_loop_lag_s: float | None = Field(
        0.05,
        gt=0,
        description="A window in which the event loop ran a timer later than this counts as queueing: the limit "
        "shrinks and does not grow (None: latency alone).",
    )
    max_loop_busy: float | None = Field(
        0.75,
        gt=0,
        le=1,
        description="A window in which the event loop's thread was busy (on the CPU) more than this fraction of "
        "the time counts as queueing: the limit shrinks and does not grow, keeping headroom for bursts and "
        "refusals (None: no such limit).",
    )
    loop_lag_interval_s: float = Field(0.005, gt=0, description="How often the event loop's lag is measured.")
    queue: int = Field(32, ge=0, description="Calls that may wait for a free slot; more are refused at once.")
    queue_timeout_s: float = Field(0.02, ge=0, description="How long a call waits in the queue before a 429.")


class DashboardSettings(BaseModel):
    """Dashboard sign-in: how long a session lasts and how failed sign-ins are throttled."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    session_ttl_s: float = Field(12 * 3600, gt=0, le=30 * 86400, description="How long a sign-in lasts.")
    login_attempts: int = Field(5, ge=1, le=1000, description="Failed sign-ins per client before it must wait.")
    login_window_s: float = Field(300, gt=0, le=86400, description="The window those failures are counted in.")
    trace_url: str | None = Field(
        None,
        description="Link from a model call to its trace: an http(s) URL with `{trace_id}` in it, e.g. "
        "`https://jaeger.example/trace/{trace_id}` (Jaeger), `https://grafana.example/explore?...{trace_id}...` "
        "(Tempo) or `https://ui.honeycomb.io/TEAM/environments/ENV/trace?trace_id={trace_id}` (Honeycomb).",
    )

    @field_validator("trace_url")
    @classmethod
    def _trace_template(cls, v: str | None) -> str | None:
        if v is None:
            return None
        if not v.startswith(("https://", "http://")) or "{trace_id}" not in v:
            raise ValueError("must be an http(s) URL containing {trace_id}")
        return v


class ServerSettings(BaseModel):
    """Everything the gateway needs to start. Every field has a working default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=256)
    database_url: str | None = Field(
        None, description="SQLAlchemy URL of the run store; default SQLite at ./.legato/legato.db."
    )
    redis_url: str | None = Field(None, description="Redis for limits and budgets shared across replicas.")
    redis_prefix: str = "legato:"
    redis_timeout_s: float = Field(1.0, gt=0, le=60, description="Give up on a Redis command after this long.")
    limits_failure_mode: Literal["fail_closed", "fail_open"] = Field(
        "fail_closed",
        description="When Redis is unreachable: answer 503 (fail_closed) or serve keys with limits uncounted.",
    )
    budget_wait_s: float = Field(
        10.0, ge=0, le=600, description="How long a call waits for the same key's calls in flight to settle."
    )
    master_key: SecretStr | None = Field(None, description="Admin key; write it as env:LEGATO_MASTER_KEY.")
    execute_runs: bool = Field(
        True,
        description="Execute submitted runs in this process; false (`--no-execute`): enqueue every run for "
        "`legato worker` (its `queue`, its pipeline's queue, else `default`).",
    )
    # Protection.
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    max_messages: int = Field(1000, ge=1)
    max_output_tokens: int = Field(65536, ge=1)
    max_in_flight: int = Field(512, ge=1, description="Requests served at once before answering 429.")
    upstream_timeout_s: float = Field(120.0, gt=0)
    admission: AdmissionSettings = Field(default_factory=AdmissionSettings)
    # Slow and idle clients.
    header_timeout_s: float = Field(
        10.0, gt=0, description="A request's headers must arrive within this, from the connection or its first byte."
    )
    body_timeout_s: float = Field(30.0, gt=0, description="A request's whole body must arrive within this; else 408.")
    idle_timeout_s: float = Field(5.0, gt=0, description="A kept-alive connection idle this long is closed.")
    auth_failures: int = Field(
        20, ge=0, le=100_000, description="Wrong API keys per client address before it gets 429 (0: not counted)."
    )
    auth_failure_window_s: float = Field(60.0, gt=0, le=86400, description="The window those are counted in.")
    max_connections_per_client: int = Field(
        256, ge=0, description="Open connections per client address and worker process (0: no cap)."
    )
    mcp_sessions_per_key: int = Field(
        16, ge=1, le=10_000, description="Open MCP sessions per key; opening one more ends its least recently used."
    )
    # Shutdown and readiness.
    drain_delay_s: float = Field(
        5.0, ge=0, description="On SIGTERM, /readyz answers 503 this long while requests are still served."
    )
    drain_timeout_s: float = Field(30.0, ge=0, description="Then the grace period for in-flight work.")
    ready_when: Literal["any_model", "all_models"] = Field(
        "any_model", description="/readyz is 200 when at least one served model (or every one) is healthy."
    )
    key_cache_ttl_s: float = Field(5.0, ge=0, description="How long a replica trusts a looked-up key.")
    ssrf: SSRFSettings = Field(default_factory=SSRFSettings)
    dashboard: DashboardSettings = Field(default_factory=DashboardSettings)
    # What is exposed.
    models: list[str] | None = Field(None, description="Model and group names to expose; default all.")
    default_model: str | None = None
    log_level: str = "info"

    @field_validator("database_url", "redis_url")
    @classmethod
    def _blank_is_none(cls, v: str | None) -> str | None:
        return v or None

    def with_overrides(self, **overrides: Any) -> ServerSettings:
        """A copy with the given fields replaced; ``None`` means "not given" and is ignored."""
        given = {k: v for k, v in overrides.items() if v is not None}
        return self.model_validate({**self.model_dump(), **given}) if given else self

    def store_url(self, base_dir: Path | None = None) -> str:
        """The run store URL, defaulting to SQLite under ``./.legato``."""
        if self.database_url:
            return _async_url(self.database_url)
        root = (base_dir or Path.cwd()) / ".legato"
        return f"sqlite+aiosqlite:///{root / 'legato.db'}"


def _async_url(url: str) -> str:
    """Accept the plain ``postgresql://`` / ``sqlite://`` spellings and pick the async driver."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.split(":///", 1)[1]
    return url


def load_settings(config: LegatoConfig | None = None, **overrides: Any) -> ServerSettings:
    """Read the ``server:`` section (missing: defaults) and apply CLI overrides."""
    config = config or LegatoConfig.load()
    return config.section("server", ServerSettings).with_overrides(**overrides)
