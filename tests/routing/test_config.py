from __future__ import annotations

from pathlib import Path

import pytest
from scripted_model import Scripted, req

from legato.config import LegatoConfig
from legato.errors import AuthenticationFailed, ConfigError, ServerError
from legato.providers import Model
from legato.resilience import Hedge, Retry, VirtualClock
from legato.routing import Cascade, Groups, HealthChecker, Router, Selector, build_groups

YAML = """
routing:
  defaults:
    strategy: round_robin
    retry: {max_attempts: 2, base_delay: 0.1}
    breaker: {sliding_window_size: 10, minimum_number_of_calls: 5}
    outlier: {consecutive_failures: 3, base_ejection: 10}
  health_check: {interval: 15, timeout: 2}
groups:
  smart:
    strategy: latency
    deployments:
      - {model: gpt, name: gpt-east, weight: 2, rpm: 500, capabilities: [vision, tools]}
      - {model: claude, price: {input: 3, output: 15}}
    fallbacks: {on_failure: [backup], context_window: [long]}
    degrade: {answer: "busy, try again"}
    hedge: {delay: 2.0}
  backup:
    deployments: [{model: local}]
    fallbacks: {on_failure: [smart]}
    retry: false
  long:
    deployments: [{model: claude}]
  cheap-first:
    cascade:
      tiers: [{model: local, price: {input: 0}}, {model: smart}]
      scorer: {confidence: 0.8}
  auto:
    select:
      rules:
        - {target: long, min_input_tokens: 5000}
      default: cheap-first
"""


def load(tmp_path: Path, text: str = YAML) -> LegatoConfig:
    path = tmp_path / "legato.yaml"
    path.write_text(text)
    return LegatoConfig.load(path)


def resolver(models: dict[str, Model]):  # type: ignore[no-untyped-def]
    def resolve(name: str) -> Model:
        return models[name]

    return resolve


def models(clock: VirtualClock) -> dict[str, Scripted]:
    return {
        "gpt": Scripted("gpt", ["gpt"], clock=clock),
        "claude": Scripted("claude", ["claude"], clock=clock),
        "local": Scripted("local", ["local"], clock=clock),
    }


async def test_builds_every_kind_of_group(tmp_path: Path, clock: VirtualClock) -> None:
    m = models(clock)
    groups = build_groups(load(tmp_path), resolver(dict(m)), clock=clock)
    assert isinstance(groups, Groups)
    smart = groups.get("smart")
    assert isinstance(smart, Hedge)
    assert isinstance(smart.inner, Retry)
    assert isinstance(groups.get("backup"), Router)  # retry: false
    assert isinstance(groups.get("cheap-first"), Cascade)
    assert isinstance(groups.get("auto"), Selector)
    router = groups.router("smart")
    assert router is not None
    assert [d.name for d in router.deployments] == ["gpt-east", "claude"]
    assert router.deployments[0].limiter is not None
    assert router.deployments[0].deployment.capabilities == frozenset({"vision", "tools"})
    assert groups.health_checker().interval == 15


async def test_fallbacks_between_groups_and_degradation(tmp_path: Path, clock: VirtualClock) -> None:
    down = {
        "gpt": Scripted("gpt", [ServerError("x")], clock=clock),
        "claude": Scripted("claude", [ServerError("x")], clock=clock),
        "local": Scripted("local", [ServerError("x")], clock=clock),
    }
    groups = build_groups(load(tmp_path), resolver(dict(down)), clock=clock)
    response = await groups.get("smart").chat(req())
    assert response.degraded is True
    assert response.text == "busy, try again"
    calls = {name: model.calls for name, model in down.items()}
    # backup falls back to smart (whose own fallback, backup, was already visited), then smart degrades
    response = await groups.get("backup").chat(req())
    assert response.tier == "smart/degraded:static"
    assert down["local"].calls == calls["local"] + 1


async def test_selector_and_cascade_resolve_group_names(tmp_path: Path, clock: VirtualClock) -> None:
    groups = build_groups(load(tmp_path), resolver(dict(models(clock))), clock=clock)
    assert (await groups.get("auto").chat(req("x" * 40_000))).tier == "long/claude"
    # local's answer has no confidence field: the cascade escalates to the smart group
    response = await groups.get("auto").chat(req("hi"))
    assert response.tier == "cheap-first/smart"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("groups:\n  g:\n    deployments: []\n", "at least one"),
        (
            "groups:\n  g:\n    deployments: [{model: gpt}]\n    cascade: {tiers: [{model: a}, {model: b}]}\n",
            "exactly one",
        ),
        ("groups:\n  g:\n    strategy: fastest\n    deployments: [{model: gpt}]\n", "groups.g.strategy"),
        ("groups:\n  g:\n    deployments: [{model: gpt, capabilities: [telepathy]}]\n", "telepathy"),
        ("groups:\n  g:\n    deployments: [{model: gpt}]\n    degrade: {}\n", "exactly one of 'model' or 'answer'"),
        ("routing:\n  defaults:\n    breaker: {failure_rate_threshold: 150}\n", "failure_rate_threshold"),
    ],
)
def test_invalid_config_names_the_field(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        build_groups(load(tmp_path, text), resolver({}))
    assert "legato.yaml:" in str(info.value)


def test_unknown_model_name_is_reported_with_the_group(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"groups\.g: 'nope' is neither a group nor a model"):
        build_groups(load(tmp_path, "groups:\n  g:\n    deployments: [{model: nope}]\n"), resolver({}))


async def test_health_checker_restores_and_ejects(tmp_path: Path, clock: VirtualClock) -> None:
    state = {"gpt": AuthenticationFailed("revoked")}

    def script(n: int) -> str | Exception:
        return state.get("gpt", "gpt")

    m = {
        "gpt": Scripted("gpt", script, clock=clock),
        "claude": Scripted("claude", [ServerError("down")], clock=clock),
    }
    text = "groups:\n  g:\n    deployments: [{model: gpt}, {model: claude}]\n"
    groups = build_groups(load(tmp_path, text), resolver(dict(m)), clock=clock)
    checker: HealthChecker = groups.health_checker()
    results = await checker.check_once()
    assert [(r.deployment, r.ok) for r in results] == [("gpt", False), ("claude", False)]
    assert [h.state for h in groups.health()] == ["unhealthy", "ejected"]
    del state["gpt"]  # the key was fixed
    results = await checker.check_once()
    assert groups.health()[0].state == "healthy"
    assert (await groups.get("g").chat(req())).tier == "g/gpt"


def test_models_get_resolves_a_group_name_to_one_shared_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import legato.models

    monkeypatch.setenv("LEGATO_TEST_KEY", "sk-test")
    text = (
        "models:\n"
        "  a: {provider: openai, model: gpt-4o-mini, api_key: env:LEGATO_TEST_KEY, base_url: 'http://127.0.0.1:9/v1'}\n"
        "groups:\n"
        "  g:\n"
        "    retry: false\n"
        "    deployments: [{model: a}, {model: a, name: a-2}]\n"
    )
    first = legato.models.get("g", load(tmp_path, text))
    again = legato.models.get("g", load(tmp_path, text))
    assert isinstance(first, Router)
    assert first is again  # one router per configuration: health is shared
    assert [d.name for d in first.deployments] == ["a", "a-2"]
    assert "g" in legato.models.names(load(tmp_path, text))


async def test_model_without_its_key_is_unavailable_and_the_group_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import legato.models

    monkeypatch.delenv("LEGATO_UNSET_KEY", raising=False)
    text = (
        "models:\n"
        "  a: {provider: openai, model: gpt-4o-mini, api_key: env:LEGATO_UNSET_KEY}\n"
        "groups:\n"
        "  g:\n"
        "    retry: false\n"
        "    deployments: [{model: a}]\n"
        "    degrade: {answer: 'running without a provider key'}\n"
    )
    group = legato.models.get("g", load(tmp_path, text))
    assert isinstance(group, Router)
    health = group.health()[0]
    assert health.state == "unavailable"
    assert health.last_error is not None
    assert "LEGATO_UNSET_KEY" in health.last_error
    response = await group.chat(req())
    assert response.degraded is True
    assert response.text == "running without a provider key"


def test_a_typo_in_a_deployment_name_fails_at_load(tmp_path: Path) -> None:
    import legato.models

    text = "groups:\n  typo:\n    deployments: [{model: gtp-4o}]\n"
    with pytest.raises(ConfigError, match="gtp-4o"):
        legato.models.get("typo", load(tmp_path, text))


async def test_closing_a_shared_group_leaves_its_models_open_until_the_groups_close(
    tmp_path: Path, clock: VirtualClock
) -> None:
    m = models(clock)
    groups = build_groups(load(tmp_path), resolver(dict(m)), clock=clock)
    smart = groups.get("smart")
    await smart.chat(req())
    await smart.aclose()  # one caller is done with it; others may still be mid-request
    assert m["gpt"].closed == 0
    await groups.aclose()
    assert m["gpt"].closed == 1


def test_each_event_loop_gets_its_own_shared_groups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    import anyio

    import legato.models
    from legato.routing import aclose_shared_groups
    from legato.testing import FakeProvider

    monkeypatch.setenv("LEGATO_TEST_KEY", "sk-test")
    with FakeProvider(seed=1).in_thread() as fake:
        text = (
            "models:\n"
            f"  a: {{provider: openai, model: a, api_key: env:LEGATO_TEST_KEY, base_url: '{fake.openai_base_url}'}}\n"
            "groups:\n"
            "  g:\n"
            "    deployments: [{model: a}]\n"
        )
        config = load(tmp_path, text)

        async def two_lookups() -> Model:
            first = legato.models.get("g", config)
            assert legato.models.get("g", config) is first  # shared on this loop
            assert (await first.chat(req())).text == "hi"
            await first.aclose()  # a caller closing its group leaves the pools to the others
            assert (await legato.models.get("g", config).chat(req())).text == "hi"
            await aclose_shared_groups()  # the loop's owner closes its pools before the loop ends
            assert legato.models.get("g", config) is not first  # a later lookup builds new groups
            await aclose_shared_groups()
            return first

        on_first_loop = anyio.run(two_lookups)
        on_second_loop = anyio.run(two_lookups)  # a pool bound to the first loop would fail here
    assert on_first_loop is not on_second_loop
    del on_first_loop, on_second_loop
    gc.collect()  # dropping a finished loop's groups raises no warning (warnings are errors here)


def test_health_reports_the_groups_that_build_and_skips_one_that_cannot(tmp_path: Path) -> None:
    text = "groups:\n  ok:\n    deployments: [{model: gpt}]\n  twins:\n    deployments: [{model: gpt}, {model: gpt}]\n"
    groups = build_groups(load(tmp_path, text), resolver({"gpt": Scripted("gpt")}))
    with pytest.raises(ConfigError, match="two deployments are named"):
        groups.get("twins")
    assert [(h.group, h.deployment) for h in groups.health()] == [("ok", "gpt")]
