"""Typed gateway settings: the ``server:`` section of ``legato.yaml`` plus CLI flags.

Flags given on the command line override the file (:meth:`ServerSettings.with_overrides`);
secrets are written ``env:NAME`` in the file and resolved by the config loader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from legato.config import LegatoConfig

__all__ = ["SSRFSettings", "ServerSettings", "load_settings"]


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
    master_key: SecretStr | None = Field(None, description="Admin key; write it as env:LEGATO_MASTER_KEY.")
    # Protection.
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    max_messages: int = Field(1000, ge=1)
    max_output_tokens: int = Field(65536, ge=1)
    max_in_flight: int = Field(512, ge=1, description="Requests served at once before answering 429.")
    upstream_timeout_s: float = Field(120.0, gt=0)
    drain_timeout_s: float = Field(30.0, ge=0, description="Grace period for in-flight work on SIGTERM.")
    key_cache_ttl_s: float = Field(5.0, ge=0, description="How long a replica trusts a looked-up key.")
    ssrf: SSRFSettings = Field(default_factory=SSRFSettings)
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
