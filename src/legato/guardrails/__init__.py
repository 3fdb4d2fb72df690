"""Guardrails: Model wrappers that check what goes to a model and what comes back.

:class:`PIIGuard` masks, redacts or blocks personal data with Microsoft Presidio on
the spaCy pipeline legato ships. Guardrails are registered by name
(:func:`register`) so that gateway keys can name one. See docs/data-protection.md.
"""

from legato.errors import GuardrailBlocked
from legato.guardrails._pii import PIIGuard, PIIMode
from legato.guardrails._presidio import DetectionEngine
from legato.guardrails._registry import Guardrail, apply, names, register

__all__ = ["DetectionEngine", "Guardrail", "GuardrailBlocked", "PIIGuard", "PIIMode", "apply", "names", "register"]
