"""How a command runs its async part: ``run_loop(main, *args)``, ``anyio.run`` with the
command as the owner of the event loop.

The routing groups ``legato.models.get`` shares keep connection pools bound to the
loop that opened them; before the loop ends its owner closes them
(:func:`legato.routing.aclose_shared_groups`), so no pool outlives its loop and
nothing reports an unclosed session at exit.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar, TypeVarTuple

__all__ = ["run_loop"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


def run_loop(main: Callable[[*Ts], Awaitable[T]], *args: *Ts) -> T:
    """``anyio.run(main, *args)``, closing the shared routing groups' pools before the loop ends."""
    import anyio

    async def owned() -> T:
        try:
            return await main(*args)
        finally:
            if "legato.routing._shared" in sys.modules:  # nothing to close when no group was looked up
                from legato.routing import aclose_shared_groups

                with anyio.CancelScope(shield=True):
                    await aclose_shared_groups()

    return anyio.run(owned)
