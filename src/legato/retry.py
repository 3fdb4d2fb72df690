"""Retry policy shared by pipeline steps and model calls.

A :class:`RetryPolicy` only *decides*: given the attempt number and the error it
returns how long to wait before the next attempt, or ``None`` to stop. Sleeping and
the clock belong to the caller (the scheduler or the resilience wrapper), which is
how tests run in virtual time. The policy is a leaf module: it imports only
``legato.errors``, so both the engine and the model layer can use it.

Backoff is exponential with *full jitter* (AWS Architecture Blog, "Exponential
Backoff and Jitter"): ``uniform(0, min(cap, base * multiplier ** (attempt - 1)))``.
An error that carries ``retry_after`` (a provider's ``Retry-After``) waits at least
that long, capped at ``max_retry_after`` so a hostile header cannot park a caller.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from legato.errors import ExecutorError, ModelError

__all__ = ["RetryPolicy", "is_retryable"]


def is_retryable(error: BaseException) -> bool:
    """Default predicate: model and executor errors say so themselves; timeouts and
    connection errors are transient; anything else (a bug in a step) is not retried unless the
    policy is told to retry all exceptions."""
    if isinstance(error, ModelError | ExecutorError):
        return error.retryable
    return isinstance(error, TimeoutError | ConnectionError)


@dataclass(frozen=True)
class RetryPolicy:
    """How many times to try, and how long to wait between tries.

    Args:
        max_attempts: total attempts including the first (1 = no retry).
        base_delay: first backoff ceiling in seconds.
        multiplier: growth of the ceiling per attempt.
        max_delay: cap on the backoff ceiling.
        jitter: ``"full"`` (uniform 0..ceiling) or ``"none"`` (exactly the ceiling).
        max_retry_after: cap on a provider's ``retry_after``; beyond it we give up
            rather than wait (the caller can fall back elsewhere).
        deadline: overall seconds across all attempts, or None.
        retry_on: predicate deciding whether an error is worth another attempt.
    """

    max_attempts: int = 3
    base_delay: float = 0.5
    multiplier: float = 2.0
    max_delay: float = 30.0
    jitter: str = "full"
    max_retry_after: float = 60.0
    deadline: float | None = None
    retry_on: Callable[[BaseException], bool] = is_retryable
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("delays must be >= 0")
        if self.jitter not in ("full", "none"):
            raise ValueError("jitter must be 'full' or 'none'")

    @classmethod
    def none(cls) -> RetryPolicy:
        return cls(max_attempts=1)

    def backoff(self, attempt: int) -> float:
        """Backoff before attempt ``attempt + 1`` (``attempt`` counts from 1)."""
        ceiling = min(self.max_delay, self.base_delay * self.multiplier ** (attempt - 1))
        return self.rng.uniform(0, ceiling) if self.jitter == "full" else ceiling

    def next_delay(self, attempt: int, error: BaseException, elapsed: float = 0.0) -> float | None:
        """Seconds to wait before the next attempt, or None to stop retrying.

        ``attempt`` is the number of the attempt that just failed (from 1);
        ``elapsed`` the seconds spent since the first attempt started.
        """
        if attempt >= self.max_attempts or not self.retry_on(error):
            return None
        delay = self.backoff(attempt)
        retry_after = getattr(error, "retry_after", None)
        if isinstance(retry_after, int | float) and retry_after > 0:
            if retry_after > self.max_retry_after:
                return None
            delay = max(delay, float(retry_after))
        if self.deadline is not None and elapsed + delay >= self.deadline:
            return None
        return delay
