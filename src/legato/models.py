"""Models by name: ``legato.models.get("fast")``.

Names resolve through a list of resolvers, tried in order; the first that knows
the name returns a Model. The built-in resolvers are, in order:

1. the ``models:`` section of ``legato.yaml`` (``fast: {provider: openai, model: gpt-4o-mini,
   api_key: env:OPENAI_API_KEY}``);
2. the ``groups:`` section (a model group: a :class:`~legato.routing.Router`, a cascade or
   a selector; built once per event loop and configuration, so lookups share health state);
3. ``provider/model`` written inline (``openai/gpt-4o-mini``, ``anthropic/claude-haiku-4-5``),
   reading the key from the provider's usual variable (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``).

Other packages add resolvers with :func:`add_resolver` (routing adds model groups,
which come before the inline form). A resolver is ``fn(name, config) -> Model | None``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import TYPE_CHECKING

from pydantic import RootModel

from legato.config import LegatoConfig
from legato.errors import ConfigError, MissingSecret
from legato.providers._factory import ModelConfig, build, provider_names

if TYPE_CHECKING:
    from legato.providers import Model
    from legato.routing import Groups

__all__ = [
    "ModelsSection",
    "NameSource",
    "Resolver",
    "add_resolver",
    "configured",
    "get",
    "group_names",
    "model_groups",
    "names",
    "resolve_configured",
    "resolve_group",
    "resolve_inline",
]

Resolver = Callable[[str, LegatoConfig], "Model | None"]

DEFAULT_KEYS = {
    "openai": "env:OPENAI_API_KEY",
    "anthropic": "env:ANTHROPIC_API_KEY",
    "azure": "env:AZURE_OPENAI_API_KEY",
    "huggingface": "env:HF_TOKEN",
}


class ModelsSection(RootModel[dict[str, ModelConfig]]):
    """The ``models:`` section: model name -> :class:`~legato.providers.ModelConfig`."""

    root: dict[str, ModelConfig] = {}


def configured(config: LegatoConfig | None = None) -> dict[str, ModelConfig]:
    """The named models of ``legato.yaml`` (secrets are left as ``env:`` references)."""
    config = config if config is not None else LegatoConfig.load()
    return config.section("models", ModelsSection, resolve_secrets=False).root


def resolve_configured(name: str, config: LegatoConfig) -> Model | None:
    models = configured(config)
    cfg = models.get(name)
    if cfg is None:
        return None
    where = f"{config.source or 'legato.yaml'}: models.{name}"
    missing = cfg.missing_secret()
    if missing:
        raise MissingSecret(
            f"{where}: model {name!r} needs the environment variable {missing}, which is not set", variable=missing
        )
    try:
        model = build(cfg, name)
        if cfg.guardrail is None:
            return model
        from legato.guardrails import apply

        return apply(cfg.guardrail, model)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def guarded(name: str, config: LegatoConfig) -> bool:
    """Whether calls to ``name`` pass a guardrail set in ``legato.yaml``: the model's
    own, its group's, or one on a model or group it can route to."""
    from legato.routing import GroupsSection

    models = configured(config)
    groups = config.section("groups", GroupsSection).root if config.raw("groups") else {}
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        if current in models and models[current].guardrail is not None:
            return True
        if current in groups:
            if groups[current].guardrail is not None:
                return True
            todo += groups[current].references()
    return False


def resolve_group(name: str, config: LegatoConfig) -> Model | None:
    """A group of the ``groups:`` section: a Router, Cascade or Selector (shared per event loop)."""
    groups = config.raw("groups")
    if not isinstance(groups, dict) or name not in groups:
        return None
    return model_groups(config).get(name)


def model_groups(config: LegatoConfig | None = None) -> Groups:
    """Every group of ``legato.yaml``, built once per event loop and configuration.

    A model whose API key variable is not set becomes an unavailable deployment
    (the group falls back and says so) instead of failing the whole file.
    """
    from legato.routing import ModelUnavailable, groups_for

    config = config if config is not None else LegatoConfig.load()

    def resolve(model_name: str) -> Model:
        try:
            return get(model_name, config)
        except ConfigError as exc:
            if _missing_secret(model_name, config):
                raise ModelUnavailable(str(exc)) from exc
            raise

    return groups_for(config, resolve)


def _missing_secret(name: str, config: LegatoConfig) -> str | None:
    cfg = configured(config).get(name)
    if cfg is None:
        provider, slash, _ = name.partition("/")
        key = DEFAULT_KEYS.get(provider) if slash else None
        cfg = ModelConfig(provider=provider, model=name, api_key=key) if key else None
    return cfg.missing_secret() if cfg is not None else None


def group_names(config: LegatoConfig) -> list[str]:
    groups = config.raw("groups")
    return sorted(groups) if isinstance(groups, dict) else []


def resolve_inline(name: str, config: LegatoConfig) -> Model | None:
    provider, slash, model = name.partition("/")
    if not slash or provider not in provider_names():
        return None
    cfg = ModelConfig(provider=provider, model=model, api_key=DEFAULT_KEYS.get(provider))
    missing = cfg.missing_secret()
    if missing:
        message = f"model {name!r} needs the environment variable {missing}, which is not set"
        raise MissingSecret(message, variable=missing)
    return build(cfg, name)


NameSource = Callable[[LegatoConfig], "list[str]"]

_resolvers: list[Resolver] = [resolve_configured, resolve_group, resolve_inline]
_name_sources: list[NameSource] = [group_names]


def add_resolver(resolver: Resolver, *, names: NameSource | None = None, before_inline: bool = True) -> None:
    """Register a name resolver, and optionally where :func:`names` finds the names it serves.

    By default it is tried before the inline ``provider/model`` form.
    """
    if names is not None and names not in _name_sources:
        _name_sources.append(names)
    if resolver in _resolvers:
        return
    if before_inline and resolve_inline in _resolvers:
        _resolvers.insert(_resolvers.index(resolve_inline), resolver)
    else:
        _resolvers.append(resolver)


def get(name: str, config: LegatoConfig | None = None) -> Model:
    """The Model called ``name``. Raises ConfigError naming the known models otherwise.

    The returned model is not connected yet (pools open on first use); close it
    with ``await model.aclose()`` when done.
    """
    config = config if config is not None else LegatoConfig.load()
    for resolver in list(_resolvers):
        model = resolver(name, config)
        if model is not None:
            return model
    raise ConfigError(_unknown(name, config))


def _unknown(name: str, config: LegatoConfig) -> str:
    """Why ``name`` names no model, with the closest known name or provider."""
    provider, slash, _ = name.partition("/")
    if slash and provider not in provider_names() and provider not in configured(config):
        return f"unknown provider {provider!r} in {name!r}{_did_you_mean(provider, provider_names())}; " + (
            f"known providers: {', '.join(provider_names())}"
        )
    known = sorted(configured(config))
    hint = f"known models: {', '.join(known)}" if known else "no models are configured in legato.yaml"
    suggestion = _did_you_mean(name, names(config))
    return f"unknown model {name!r}{suggestion}; {hint}; or write provider/model (e.g. openai/gpt-4o-mini)"


def _did_you_mean(name: str, candidates: list[str]) -> str:
    match = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def names(config: LegatoConfig | None = None) -> list[str]:
    """Names served: the models of ``legato.yaml`` plus those of registered name sources (groups...)."""
    config = config if config is not None else LegatoConfig.load()
    found = set(configured(config))
    for source in _name_sources:
        found.update(source(config))
    return sorted(found)
