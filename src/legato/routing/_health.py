"""Active health checks: a periodic cheap probe of every deployment.

Passive ejection only learns from real traffic; a deployment taken out for bad
credentials (or one that is never chosen) needs a probe to come back. A
:class:`HealthChecker` sends each deployment a one-token chat (or your own probe)
every ``interval`` seconds: a pass puts an ejected deployment back in rotation
at once, a failure ejects it (for ``interval``, so the next check decides again).
Client errors other than bad credentials count as a pass: the deployment
answered.

Run it inside your own task group (structured concurrency, nothing in the
background without an owner)::

    async with anyio.create_task_group() as tg:
        tg.start_soon(HealthChecker([router], interval=30).run)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import anyio

from legato.errors import AuthenticationFailed, ModelError, ProviderTimeout
from legato.providers import ChatRequest, Message, Model
from legato.resilience import Clock, SystemClock, is_client_error
from legato.routing._deployment import DeploymentState
from legato.routing._router import Router

__all__ = ["HealthChecker", "ProbeResult", "ping"]

Probe = Callable[[Model], Awaitable[None]]

_PING = ChatRequest(messages=[Message(role="user", content="ping")], max_tokens=1, metadata={"health_check": True})


async def ping(model: Model) -> None:
    """The default probe: a one-token chat."""
    await model.chat(_PING)


@dataclass(frozen=True)
class ProbeResult:
    group: str
    deployment: str
    ok: bool
    latency: float
    error: str | None = None


class HealthChecker:
    """Probe every deployment of ``routers`` (see the module docstring)."""

    def __init__(
        self,
        routers: Sequence[Router],
        *,
        interval: float = 30.0,
        timeout: float = 10.0,
        probe: Probe = ping,
        clock: Clock | None = None,
    ) -> None:
        if interval <= 0 or timeout <= 0:
            raise ValueError("health check interval and timeout must be > 0")
        self.routers = list(routers)
        self.interval = interval
        self.timeout = timeout
        self.probe = probe
        self.clock: Clock = clock or SystemClock()

    async def check_once(self) -> list[ProbeResult]:
        """Probe every deployment concurrently and apply the verdicts."""
        # A deployment that cannot be built here (no API key) has nothing to probe.
        targets = [d for r in self.routers for d in r.deployments if d.unavailable is None]
        results: list[ProbeResult | None] = [None] * len(targets)

        async def one(index: int, deployment: DeploymentState) -> None:
            results[index] = await self._probe(deployment)

        async with anyio.create_task_group() as tg:
            for index, deployment in enumerate(targets):
                tg.start_soon(one, index, deployment)
        return [r for r in results if r is not None]

    async def _probe(self, deployment: DeploymentState) -> ProbeResult:
        started = self.clock.now()
        error: BaseException | None = None
        with self.clock.move_on_after(self.timeout) as scope:
            try:
                # The raw model, not the rate-limited one: a probe must not queue.
                await self.probe(deployment.deployment.model)
            except ModelError as exc:
                error = exc
        if scope.cancelled_caught:
            error = ProviderTimeout(f"health probe took longer than {self.timeout:g}s")
        latency = self.clock.now() - started
        ok = error is None or (is_client_error(error) and not isinstance(error, AuthenticationFailed))
        if ok:
            deployment.mark_healthy()
        elif isinstance(error, AuthenticationFailed):
            deployment.mark_unhealthy("authentication")
        else:
            deployment.last_error = f"{type(error).__name__}: {error}"
            deployment.eject(self.clock.now() + self.interval, "health_check")
        return ProbeResult(
            deployment.group,
            deployment.name,
            ok,
            latency,
            None if error is None else f"{type(error).__name__}: {error}",
        )

    async def run(self) -> None:
        """Check forever, every ``interval`` seconds, until cancelled."""
        while True:
            await self.check_once()
            await self.clock.sleep(self.interval)
