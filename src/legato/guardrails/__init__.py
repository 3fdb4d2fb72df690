"""Guardrails: Model wrappers that check what goes to a model and what comes back.

:class:`PIIGuard` masks, redacts or blocks personal data with Microsoft Presidio on
the spaCy pipeline legato ships. See docs/data-protection.md.
"""

from legato.errors import GuardrailBlocked
from legato.guardrails._pii import PIIGuard, PIIMode

__all__ = ["GuardrailBlocked", "PIIGuard", "PIIMode"]
