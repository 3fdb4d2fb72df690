"""Shared fixtures: real PostgreSQL and Redis, never mocks.

With ``CI=true`` a test that needs a service fails when the service is down; on a
developer machine it is skipped with the command that starts the service.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator

import pytest

from _postgres import throwaway_database

POSTGRES_HOST, POSTGRES_PORT = "127.0.0.1", 5432
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    if _reachable(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} (CI=true: services are required)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_admin_dsn() -> str:
    require_service("PostgreSQL", POSTGRES_HOST, POSTGRES_PORT)
    return f"postgresql://{POSTGRES_HOST}:{POSTGRES_PORT}/test"


@pytest.fixture(scope="session")
def postgres_url(postgres_admin_dsn: str) -> Iterator[str]:
    """A fresh PostgreSQL database for this test session (SQLAlchemy asyncpg URL), dropped afterwards."""
    with throwaway_database(postgres_admin_dsn) as name:
        yield f"postgresql+asyncpg://postgres@{POSTGRES_HOST}:{POSTGRES_PORT}/{name}"


@pytest.fixture(scope="session")
def redis_url() -> str:
    require_service("Redis", REDIS_HOST, REDIS_PORT)
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/0"


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix unique to one test, so tests never see each other's keys."""
    return f"legato-test:{uuid.uuid4().hex[:12]}:"
