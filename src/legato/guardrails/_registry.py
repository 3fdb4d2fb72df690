"""Guardrails by name: what a gateway key (``legato keys create --guardrail NAME``)
applies to every model it calls. A guardrail is a plain callable ``fn(model) -> model``
(a wrapper); :func:`register` adds one, built-ins are ``pii-mask``, ``pii-redact`` and
``pii-block``."""

from __future__ import annotations

from collections.abc import Callable

from legato.errors import ConfigError
from legato.guardrails._pii import PIIGuard, PIIMode
from legato.providers import Model

__all__ = ["Guardrail", "apply", "names", "register"]

Guardrail = Callable[[Model], Model]


def _pii(mode: PIIMode) -> Guardrail:
    def guard(model: Model) -> Model:
        return PIIGuard(model, mode=mode)

    return guard


_registry: dict[str, Guardrail] = {f"pii-{mode.value}": _pii(mode) for mode in PIIMode}


def register(name: str, guardrail: Guardrail) -> None:
    """Make ``guardrail`` available as ``name`` (replacing one of that name)."""
    _registry[name] = guardrail


def names() -> list[str]:
    return sorted(_registry)


def apply(name: str, model: Model) -> Model:
    """``model`` behind the guardrail ``name``; :class:`ConfigError` for an unknown name."""
    guardrail = _registry.get(name)
    if guardrail is None:
        raise ConfigError(f"unknown guardrail {name!r}; known: {', '.join(names())}")
    return guardrail(model)
