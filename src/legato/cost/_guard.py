"""BudgetGuard: a ``Model`` wrapper that will not let a call overspend a budget.

Before each call it estimates the cost (:class:`CostEstimator`) and reserves it on
every budget; if any budget cannot take it, the reservations already made are
released and either the call goes to the ``downgrade`` model (when one is given
and *its* estimate fits) or :class:`~legato.errors.BudgetExceeded` is raised. After
the call, each reservation is settled with the real cost.

The real cost is what the call recorded on the usage ledger (adapters record every
finished call, streams included, and retries inside the wrapped model are each
recorded), read from a child ledger opened around the call; failing that, the
response's own ``cost``; failing that (a model that reports no price) the estimate.
A cache hit recorded at ``cost=0`` is charged 0.

Overshoot: the admission rule (see :mod:`legato.cost._budget`) lets concurrent
calls share only money they could each overspend ``margin`` times over, and runs
the last calls of a budget one at a time; a budget ends above its limit by at most
one call's overrun as long as no call costs more than ``margin`` times its
estimate. Set ``max_tokens`` on requests: the estimate then bounds the output.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TypeVar

from legato.cost._budget import Budget, BudgetStore, MemoryBudgetStore, Reservation
from legato.cost._estimate import CostEstimate, CostEstimator
from legato.errors import BudgetExceeded, ConfigError
from legato.ledger import Ledger, current_ledger, use_ledger
from legato.providers import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbedRequest,
    EmbedResponse,
    Model,
    ModelWrapper,
    close_stream,
)

__all__ = ["BudgetGuard"]

Req = TypeVar("Req", ChatRequest, EmbedRequest)


class BudgetGuard(ModelWrapper):
    """Check ``budgets`` before every call to ``inner`` and charge them after.

    Args:
        inner: the guarded model.
        budgets: the limits to enforce (all of them must accept a call).
        store: where the counts live (:class:`MemoryBudgetStore` by default;
            :class:`RedisBudgetStore` to share them across processes).
        estimator: prices calls before they are made.
        downgrade: a cheaper model to call instead of raising when a budget cannot
            take the call; its answers are marked ``degraded=True``.
        unpriced: ``"reject"`` (default) raises ``ConfigError`` for a model with no
            known price, since such calls could never be counted; ``"allow"`` lets
            them through uncounted.
        run: the run a ``run`` budget counts under (default: the current run's ledger).
        margin, wait_s: the admission rule of :meth:`BudgetStore.reserve`: concurrent
            calls hold ``margin`` times their estimate; a call that only has to wait
            for calls in flight to settle waits up to ``wait_s`` seconds.
    """

    def __init__(
        self,
        inner: Model,
        budgets: Sequence[Budget],
        *,
        store: BudgetStore | None = None,
        estimator: CostEstimator | None = None,
        downgrade: Model | None = None,
        unpriced: str = "reject",
        run: str | None = None,
        margin: float = 2.0,
        wait_s: float = 30.0,
        name: str | None = None,
    ) -> None:
        super().__init__(inner, name=name)
        if unpriced not in ("reject", "allow"):
            raise ValueError(f"unpriced must be 'reject' or 'allow', got {unpriced!r}")
        self.budgets = tuple(budgets)
        self.store: BudgetStore = store if store is not None else MemoryBudgetStore()
        self.estimator = estimator or CostEstimator()
        self.downgrade = downgrade
        self.unpriced = unpriced
        self.run = run
        self.margin = margin
        self.wait_s = wait_s

    def __repr__(self) -> str:
        return f"BudgetGuard({self.inner!r}, budgets={list(self.budgets)!r})"

    # -- reservation ----------------------------------------------------------------

    def _estimate(self, request: ChatRequest | EmbedRequest, model: Model) -> CostEstimate:
        if isinstance(request, ChatRequest):
            estimate = self.estimator.chat(request, model)
        else:
            estimate = self.estimator.embed(request, model)
        if estimate.usd is None and self.unpriced == "reject":
            raise ConfigError(
                f"no price known for {estimate.provider or 'model'} {estimate.model!r}: a budget cannot count its "
                "calls; set models.NAME.price in legato.yaml (or pass price= to the model), "
                "or BudgetGuard(unpriced='allow')"
            )
        return estimate

    async def reserve(self, usd: float) -> list[Reservation]:
        """Reserve ``usd`` on every budget, all or none; raises :class:`BudgetExceeded`."""
        taken: list[Reservation] = []
        try:
            for budget in self.budgets:
                taken.append(
                    await self.store.reserve(budget, usd, run=self.run, margin=self.margin, wait_s=self.wait_s)
                )
        except BaseException:
            for reservation in taken:
                await reservation.release()
            raise
        return taken

    async def _admit(self, request: Req) -> tuple[Model, Req, list[Reservation], float]:
        """Pick the model (inner or downgrade), reserve its estimate; returns what to call."""
        estimate = self._estimate(request, self.inner)
        try:
            return self.inner, request, await self.reserve(estimate.usd or 0.0), estimate.usd or 0.0
        except BudgetExceeded:
            if self.downgrade is None:
                raise
            cheaper = request.model_copy(update={"model": None})
            fallback = self._estimate(cheaper, self.downgrade)
            try:
                reservations = await self.reserve(fallback.usd or 0.0)
            except BudgetExceeded:
                pass
            else:
                return self.downgrade, cheaper, reservations, fallback.usd or 0.0
            raise

    @staticmethod
    async def _settle(reservations: list[Reservation], usd: float) -> None:
        for reservation in reservations:
            await reservation.settle(usd)

    # -- calls ----------------------------------------------------------------------

    async def chat(self, request: ChatRequest) -> ChatResponse:
        model, request, reservations, estimated = await self._admit(request)
        spend = _child_ledger()
        response: ChatResponse | None = None
        try:
            with use_ledger(spend):
                response = await model.chat(request)
        finally:
            await self._settle(reservations, _actual(spend, response.cost if response else None, estimated, response))
        if model is self.downgrade:
            response = response.model_copy(update={"degraded": True})
        return response

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        model, request, reservations, estimated = await self._admit(request)
        spend = _child_ledger()
        response: EmbedResponse | None = None
        try:
            with use_ledger(spend):
                response = await model.embed(request)
        finally:
            await self._settle(reservations, _actual(spend, response.cost if response else None, estimated, response))
        return response

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        model, request, reservations, estimated = await self._admit(request)
        spend = _child_ledger()
        reported: float | None = None
        finished = False
        upstream: AsyncIterator[ChatChunk] | None = None
        try:
            upstream = model.stream(request)
            while True:
                # The ledger is current only while the upstream works, never while our
                # consumer does: its own calls between chunks are not charged here.
                with use_ledger(spend):
                    try:
                        chunk = await anext(upstream)
                    except StopAsyncIteration:
                        finished = True
                        break
                if chunk.cost is not None:
                    reported = (reported or 0.0) + chunk.cost
                yield chunk
        finally:
            try:
                if upstream is not None:
                    with use_ledger(spend):
                        await close_stream(upstream)
            finally:
                await self._settle(reservations, _actual(spend, reported, estimated, True if finished else None))


def _child_ledger() -> Ledger:
    parent = current_ledger()
    return parent.child("budget") if parent is not None else Ledger("budget")


def _actual(spend: Ledger, reported: float | None, estimated: float, answered: object) -> float:
    """The real cost of a call: the ledger's, else the response's, else the estimate."""
    if spend.calls and not spend.unpriced_calls:
        return spend.cost
    if reported is not None:
        return reported
    if answered is None and not spend.calls:
        return 0.0  # failed before anything was recorded: nothing was billed that we know of
    return max(spend.cost, estimated)
