"""Guardrails by name: what a gateway key (``legato keys create --guardrail NAME``)
applies to every model it calls. A guardrail is a plain callable ``fn(model) -> model``
(a wrapper); :func:`register` adds one. Built-ins: ``pii-mask``, ``pii-redact`` and
``pii-block`` (Presidio with spaCy's NER: names and places too, about 20 ms per KB),
and ``pii-mask-patterns``, ``pii-redact-patterns``, ``pii-block-patterns`` (pattern and
checksum recognisers only: e-mails, phones, cards, IBANs, IPs..., a few ms per KB)."""

from __future__ import annotations

from collections.abc import Callable

from legato.errors import ConfigError
from legato.guardrails._pii import PIIGuard, PIIMode
from legato.guardrails._presidio import DetectionEngine
from legato.providers import Model

__all__ = ["Guardrail", "apply", "names", "register"]

Guardrail = Callable[[Model], Model]


def _pii(mode: PIIMode, engine: DetectionEngine) -> Guardrail:
    def guard(model: Model) -> Model:
        return PIIGuard(model, mode=mode, engine=engine)

    return guard


_SUFFIX = {DetectionEngine.NER: "", DetectionEngine.PATTERNS: "-patterns"}
_registry: dict[str, Guardrail] = {
    f"pii-{mode.value}{_SUFFIX[engine]}": _pii(mode, engine) for mode in PIIMode for engine in DetectionEngine
}


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
