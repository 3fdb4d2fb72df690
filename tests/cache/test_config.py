from __future__ import annotations

from pathlib import Path

import pytest

from legato.cache import CacheConfig, MemoryBackend, RedisBackend, SQLiteBackend
from legato.config import LegatoConfig
from legato.cost import Budget, BudgetsConfig, MemoryBudgetStore, RedisBudgetStore
from legato.errors import ConfigError

from ._doubles import CountingModel, ask


def config(tmp_path: Path, text: str) -> LegatoConfig:
    path = tmp_path / "legato.yaml"
    path.write_text(text)
    return LegatoConfig.load(path)


async def test_cache_section_builds_the_configured_cache(tmp_path: Path) -> None:
    cfg = CacheConfig.load(config(tmp_path, "cache:\n  backend: sqlite\n  path: state/c.db\n  namespace: team\n"))
    cache = cfg.wrap(CountingModel(), base_dir=tmp_path)
    try:
        assert isinstance(cache.backend, SQLiteBackend)
        assert cache.namespace == "team"
        await cache.chat(ask("hi"))
        assert (await cache.chat(ask("hi"))).cached is True
    finally:
        await cache.aclose()
    assert (tmp_path / "state" / "c.db").exists()
    assert isinstance(CacheConfig.load(config(tmp_path, "models: {}\n")).backend_for(), MemoryBackend)


def test_cache_section_errors_name_the_field_and_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"legato.yaml:3:\d+: cache.ttl_s"):
        CacheConfig.load(config(tmp_path, "cache:\n  backend: memory\n  ttl_s: -1\n"))
    with pytest.raises(ConfigError, match="needs url"):
        CacheConfig.load(config(tmp_path, "cache:\n  backend: redis\n  url: env:LEGATO_NOT_SET_ANYWHERE\n"))
    monkeypatch.setenv("LEGATO_TEST_REDIS", "redis://127.0.0.1:6379/0")
    redis = CacheConfig.load(config(tmp_path, "cache: {backend: redis, url: 'env:LEGATO_TEST_REDIS'}\n"))
    assert isinstance(redis.backend_for(), RedisBackend)


def test_budgets_section(tmp_path: Path) -> None:
    text = """
budgets:
  per_run_usd: 2
  per_day_usd: 50
  pipelines:
    nightly: {limit_usd: 10, period: month}
  downgrade_to: cheap
"""
    cfg = BudgetsConfig.load(config(tmp_path, text))
    assert cfg.budgets("nightly") == [
        Budget(2.0, "run"),
        Budget(50.0, "day"),
        Budget(10.0, "pipeline:nightly", "month"),
    ]
    assert cfg.budgets("other") == [Budget(2.0, "run"), Budget(50.0, "day")]
    assert cfg.downgrade_to == "cheap"
    assert isinstance(cfg.store_for(), MemoryBudgetStore)
    guard = cfg.guard(CountingModel(), pipeline="nightly")
    assert guard.budgets == tuple(cfg.budgets("nightly"))
    assert guard.unpriced == "reject"
    redis = BudgetsConfig(store="redis", url="redis://127.0.0.1:6379/0")
    assert isinstance(redis.store_for(), RedisBudgetStore)
    with pytest.raises(ConfigError, match=r"budgets\.pipelines\.x\.period"):
        BudgetsConfig.load(config(tmp_path, "budgets:\n  pipelines:\n    x: {limit_usd: 1, period: week}\n"))
