"""Building a Model from configuration: ``ModelConfig`` and the provider registry.

``create("openai", "gpt-4o-mini", api_key=...)`` or ``build(ModelConfig(...))``.
Each provider registers one factory function (``register_provider``); there is no
central ``if provider == ...`` chain, and a plugin adds a provider the same way.
Secrets are only ever read from the environment: ``api_key: env:OPENAI_API_KEY``.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from legato.errors import ConfigError
from legato.providers._http import HttpOptions
from legato.providers._pricing import Price
from legato.providers._types import Model

__all__ = ["ModelConfig", "build", "create", "provider_names", "register_provider"]

Factory = Callable[["ModelConfig", str], Model]


class ModelConfig(BaseModel):
    """One entry of the ``models:`` section of ``legato.yaml``.

    ``api_key`` must be an ``env:NAME`` reference (secrets are never written in the
    file); ``base_url`` may be one too (a private endpoint named per environment).
    An unset variable is reported by :meth:`missing_secret` and only the commands
    that call models (run, serve, ``validate --strict``) treat it as an error.
    Provider-specific settings go in ``options`` (e.g. ``api_version`` for
    Azure, ``task`` for Hugging Face, ``path`` for a local model).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str
    model: str = ""
    api_key: str | None = None
    base_url: str | None = None
    price: Price | None = None
    timeout: float | None = Field(default=None, gt=0, description="read timeout in seconds")
    connect_timeout: float | None = Field(default=None, gt=0)
    max_connections: int | None = Field(default=None, ge=1)
    http2: bool = False
    headers: dict[str, str] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    description: str | None = None
    guardrail: str | None = Field(
        default=None, description="a registered guardrail wrapped around this model (pii-mask, pii-block-patterns...)"
    )
    _literal_secret_ok: bool = PrivateAttr(default=False)

    def secret(self, where: str = "api_key") -> str | None:
        """The API key from the environment; None when not configured."""
        if self.api_key is None:
            return None
        if not self.api_key.startswith("env:"):
            if self._literal_secret_ok:
                return self.api_key
            raise ConfigError(f"{where}: secrets must be environment references such as 'env:OPENAI_API_KEY'")
        return os.environ.get(self.api_key[4:]) or None

    def endpoint(self) -> str | None:
        """``base_url``, read from the environment when it is an ``env:NAME`` reference."""
        if self.base_url is not None and self.base_url.startswith("env:"):
            return os.environ.get(self.base_url[4:]) or None
        return self.base_url

    def missing_secret(self) -> str | None:
        """The name of the unset environment variable this model needs, if any."""
        for value in (self.api_key, self.base_url):
            if value and value.startswith("env:") and not os.environ.get(value[4:]):
                return value[4:]
        return None

    def http_options(self) -> HttpOptions:
        base = HttpOptions()
        return HttpOptions(
            connect_timeout=self.connect_timeout or base.connect_timeout,
            read_timeout=self.timeout or base.read_timeout,
            write_timeout=base.write_timeout,
            pool_timeout=base.pool_timeout,
            max_connections=self.max_connections or base.max_connections,
            max_keepalive_connections=base.max_keepalive_connections,
            http2=self.http2,
        )


_REGISTRY: dict[str, Factory] = {}


def register_provider(name: str, factory: Factory) -> None:
    """Make ``provider: name`` buildable: ``factory(config, model_name) -> Model``."""
    _REGISTRY[name] = factory


def provider_names() -> list[str]:
    _register_builtins()
    return sorted(_REGISTRY)


def _options(cfg: ModelConfig, target: Callable[..., Any], name: str) -> dict[str, Any]:
    allowed = {p for p in inspect.signature(target).parameters if p not in ("self", "model", "kwargs")}
    unknown = sorted(set(cfg.options) - allowed)
    if unknown:
        raise ConfigError(
            f"{name}: unknown option(s) {', '.join(unknown)} for provider {cfg.provider!r}; "
            f"known: {', '.join(sorted(allowed)) or 'none'}"
        )
    return dict(cfg.options)


def _http_kwargs(cfg: ModelConfig, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "api_key": cfg.secret(),
        "price": cfg.price,
        "headers": cfg.headers or None,
        "options": cfg.http_options(),
    }


def _openai(cfg: ModelConfig, name: str, provider: str | None = None) -> Model:
    from legato.providers._openai import OpenAIModel

    opts = _options(cfg, OpenAIModel.__init__, name)
    if provider and "provider" not in opts:
        opts["provider"] = provider
    return OpenAIModel(_require_model(cfg, name), base_url=cfg.endpoint(), **_http_kwargs(cfg, name), **opts)


def _azure(cfg: ModelConfig, name: str) -> Model:
    from legato.providers._openai import AzureOpenAIModel

    opts = _options(cfg, AzureOpenAIModel.__init__, name)
    endpoint = opts.pop("endpoint", None) or cfg.endpoint()
    if not endpoint:
        raise ConfigError(f"{name}: provider 'azure' needs base_url (the resource endpoint)")
    return AzureOpenAIModel(_require_model(cfg, name), endpoint=endpoint, **_http_kwargs(cfg, name), **opts)


def _anthropic(cfg: ModelConfig, name: str) -> Model:
    from legato.providers._anthropic import AnthropicModel

    opts = _options(cfg, AnthropicModel.__init__, name)
    return AnthropicModel(_require_model(cfg, name), base_url=cfg.endpoint(), **_http_kwargs(cfg, name), **opts)


def _huggingface(cfg: ModelConfig, name: str) -> Model:
    from legato.providers._huggingface import HuggingFaceModel

    opts = _options(cfg, HuggingFaceModel.__init__, name)
    return HuggingFaceModel(cfg.model, base_url=cfg.endpoint(), **_http_kwargs(cfg, name), **opts)


def _tgi(cfg: ModelConfig, name: str) -> Model:
    from legato.providers._huggingface import TGIModel

    endpoint = cfg.endpoint()
    if not endpoint:
        raise ConfigError(f"{name}: provider 'tgi' needs base_url (the TGI server)")
    opts = _options(cfg, TGIModel.__init__, name)
    return TGIModel(cfg.model or "tgi", base_url=endpoint, **_http_kwargs(cfg, name), **opts)


def _local(cfg: ModelConfig, name: str) -> Model:
    from legato.providers._local import LocalModel

    opts = _options(cfg, LocalModel.__init__, name)
    return LocalModel(cfg.model, name=name, price=cfg.price, **opts)


def _python(cfg: ModelConfig, name: str) -> Model:
    import importlib

    from legato.providers._python import PythonModel

    target = cfg.options.get("function") or cfg.model
    module_name, _, attr = str(target).partition(":")
    if not module_name or not attr:
        raise ConfigError(f"{name}: provider 'python' needs model 'package.module:function'")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{name}: cannot import {target!r}: {exc}") from exc
    return PythonModel(fn, name=name, price=cfg.price)


def _compatible(provider: str) -> Factory:
    def factory(cfg: ModelConfig, name: str) -> Model:
        return _openai(cfg, name, provider=provider)

    return factory


def _require_model(cfg: ModelConfig, name: str) -> str:
    if not cfg.model:
        raise ConfigError(f"{name}: 'model' is required for provider {cfg.provider!r}")
    return cfg.model


def _register_builtins() -> None:
    if _REGISTRY.get("openai") is not None:
        return
    builtins: dict[str, Factory] = {
        "openai": _openai,
        "azure": _azure,
        "anthropic": _anthropic,
        "huggingface": _huggingface,
        "tgi": _tgi,
        "local": _local,
        "python": _python,
    }
    # OpenAI-compatible servers: same wire format, their own name in errors, ledger and prices.
    for compatible in ("vllm", "ollama", "llamacpp", "lmstudio", "openai-compatible"):
        builtins[compatible] = _compatible(compatible)
    for key, fn in builtins.items():
        _REGISTRY.setdefault(key, fn)


def build(cfg: ModelConfig, name: str | None = None) -> Model:
    """The Model described by ``cfg`` (nothing is connected or loaded yet)."""
    _register_builtins()
    factory = _REGISTRY.get(cfg.provider)
    label = name or cfg.model or cfg.provider
    if factory is None:
        raise ConfigError(f"{label}: unknown provider {cfg.provider!r}; known: {', '.join(sorted(_REGISTRY))}")
    try:
        return factory(cfg, label)
    except TypeError as exc:
        raise ConfigError(f"{label}: {exc}") from exc


def create(provider: str, model: str = "", **settings: Any) -> Model:
    """Build a model in code: ``create("anthropic", "claude-haiku-4-5", api_key="env:ANTHROPIC_API_KEY")``.

    Keyword arguments are :class:`ModelConfig` fields; anything else goes to ``options``.
    Unlike in ``legato.yaml``, ``api_key`` may be the key itself.
    """
    fields = set(ModelConfig.model_fields)
    top = {k: v for k, v in settings.items() if k in fields}
    extra = {k: v for k, v in settings.items() if k not in fields}
    if extra:
        top["options"] = {**top.get("options", {}), **extra}
    cfg = ModelConfig(provider=provider, model=model, **top)
    cfg._literal_secret_ok = True  # a key passed in code is the caller's choice; files use env: only
    return build(cfg)
