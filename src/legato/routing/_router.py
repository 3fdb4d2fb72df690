"""``Router``: a Model over a group of deployments, with fallbacks by error class.

One request goes through these steps:

1. Pick an eligible deployment with the strategy: not ejected, breaker closed or
   with a half-open probe free, not yet tried for this request, able to serve it
   (capabilities, context window).
2. On a retryable failure (``RateLimited``, ``Overloaded``, ``ServerError``,
   ``ProviderTimeout``, ``ConnectionFailed``, ``MalformedResponse``, an open
   circuit, a cut stream before its first chunk) try the next deployment, drawing
   on the retry budget; nothing is retried on the same deployment here (wrap the
   router in ``Retry`` for backoff).
3. When the deployments are exhausted, walk the fallback chain for the error's
   class: ``context_window`` for ``ContextWindowExceeded``, ``content_filtered``
   for ``ContentFiltered``, ``on_failure`` for availability errors. Each group is
   visited at most once per request (a visited set travels with the request
   through nested routers), so fallbacks never loop.
4. As the last resort for availability errors, ``degrade``: a local model or a
   declared answer; the response then says ``degraded=True``.

A client error (``BadRequest``, ``PermissionDenied``, ``QuotaExhausted``,
``ModelNotFound``) is raised at once: one upstream attempt, no fallback.
``AuthenticationFailed`` is raised too and takes the deployment out of rotation.

Streams follow the same path until the first chunk; after it a failure raises
``StreamInterrupted(retryable=False)``: two models' outputs are never spliced.

Every answer says who gave it: ``tier`` is ``"group/deployment"`` (set by the
innermost router), ``"group/degraded:NAME"`` for the degraded tier.
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from legato.errors import (
    BadRequest,
    ContentFiltered,
    ContextWindowExceeded,
    ModelError,
    NoDeploymentAvailable,
)
from legato.providers import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbedRequest,
    EmbedResponse,
    Message,
    Model,
)
from legato.resilience import (
    BreakerPolicy,
    Clock,
    EventHub,
    FallbackTaken,
    RetryBudget,
    SystemClock,
    default_hub,
    interrupted,
    is_client_error,
)
from legato.resilience._streaming import close_stream, open_stream
from legato.routing._deployment import (
    Deployment,
    DeploymentHealth,
    DeploymentState,
    OutlierPolicy,
    input_tokens,
    required_capabilities,
)
from legato.routing._strategies import RoundRobin, Strategy

__all__ = ["Fallbacks", "Router"]

T = TypeVar("T")
R = TypeVar("R", ChatResponse, EmbedResponse)

_visited: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar("legato_routing_visited", default=frozenset())


@dataclass(frozen=True)
class Fallbacks:
    """Where a request goes when a group cannot answer it, by error class.

    ``degrade`` is the last resort for availability failures: a Model (often a
    local one) or a fixed answer string.
    """

    on_failure: Sequence[Model] = ()
    context_window: Sequence[Model] = ()
    content_filtered: Sequence[Model] = ()
    degrade: Model | str | None = None


@dataclass
class _Outcome:
    """What one pass over the deployments produced, when it produced no answer."""

    error: ModelError | None = None
    attempted: bool = False
    spent: int = 0  # retries taken from the budget
    tried: set[str] = field(default_factory=set)


def _next_deployment_may_help(error: ModelError) -> bool:
    """Availability errors move on to the next deployment; errors about the request do not."""
    return error.retryable and not is_client_error(error)


def _chain_for(error: ModelError | None, fallbacks: Fallbacks) -> Sequence[Model] | None:
    """The fallback chain for ``error``, or None when the error must be raised as is."""
    if isinstance(error, ContextWindowExceeded):
        return fallbacks.context_window or None
    if isinstance(error, ContentFiltered):
        return fallbacks.content_filtered or None
    if error is not None and (is_client_error(error) or not error.retryable):
        return None
    return fallbacks.on_failure


class Router:
    """A Model over ``deployments`` (see the module docstring for the contract)."""

    def __init__(
        self,
        name: str,
        deployments: Sequence[Deployment | Model],
        *,
        strategy: Strategy | None = None,
        fallbacks: Fallbacks | None = None,
        breaker: BreakerPolicy | None = BreakerPolicy(),
        outlier: OutlierPolicy | None = OutlierPolicy(),
        budget: RetryBudget | bool | None = True,
        clock: Clock | None = None,
        events: EventHub | None = None,
    ) -> None:
        if not deployments:
            raise ValueError(f"group {name!r} needs at least one deployment")
        self.name = name
        self.clock: Clock = clock or SystemClock()
        self.events = events or default_hub
        self.strategy: Strategy = strategy or RoundRobin()
        self.fallbacks = fallbacks or Fallbacks()
        if budget is True:
            budget = RetryBudget(clock=self.clock)
        self.budget: RetryBudget | None = budget or None
        self.deployments: list[DeploymentState] = []
        for d in deployments:
            deployment = d if isinstance(d, Deployment) else Deployment(d)
            state = DeploymentState(
                deployment, group=name, breaker=breaker, outlier=outlier, clock=self.clock, events=self.events
            )
            if any(s.name == state.name for s in self.deployments):
                raise ValueError(f"group {name!r}: two deployments are named {state.name!r}; give them names")
            self.deployments.append(state)
        # Only deployments that declare limits make the router inspect each request.
        self._constrained = any(
            d.deployment.capabilities is not None or d.deployment.context_window is not None for d in self.deployments
        )

    def __repr__(self) -> str:
        return f"Router({self.name!r}, {[d.name for d in self.deployments]})"

    def health(self) -> list[DeploymentHealth]:
        return [d.health() for d in self.deployments]

    # -- choosing --------------------------------------------------------------

    def _pick(self, request: ChatRequest | EmbedRequest, tried: set[str]) -> DeploymentState | None:
        now = self.clock.now()
        if self._constrained:
            needs = required_capabilities(request)
            tokens = input_tokens(request)
            candidates = [
                d for d in self.deployments if d.name not in tried and d.fits(needs, tokens) and d.available(now)
            ]
        else:
            candidates = [d for d in self.deployments if d.name not in tried and d.available(now)]
        if not candidates:
            return None
        return self.strategy.choose(candidates, request) if len(candidates) > 1 else candidates[0]

    def _nothing_fits(self, request: ChatRequest | EmbedRequest) -> ModelError | None:
        """A client error when no deployment could ever serve this request."""
        if not self._constrained:
            return None
        needs = required_capabilities(request)
        tokens = input_tokens(request)
        if any(d.fits(needs, tokens) for d in self.deployments):
            return None
        if any(d.fits(needs, 0) for d in self.deployments):
            return ContextWindowExceeded(
                f"about {tokens} input tokens exceed the context window of every deployment of {self.name!r}",
                model=self.name,
            )
        return BadRequest(f"no deployment of {self.name!r} supports {', '.join(sorted(needs))}", model=self.name)

    def _unavailable(self, outcome: _Outcome) -> ModelError:
        if outcome.error is not None:
            return outcome.error
        now = self.clock.now()
        waits = [d.wait_hint(now) for d in self.deployments if d.name not in outcome.tried]
        return NoDeploymentAvailable(
            f"no deployment of group {self.name!r} is available (ejected, open or already tried)",
            model=self.name,
            retry_after=min(waits) if waits and min(waits) > 0 else None,
        )

    def _tag(self, response: R, deployment: DeploymentState) -> R:
        if not isinstance(response, ChatResponse) or response.tier is not None:
            return response
        return response.model_copy(update={"tier": f"{self.name}/{deployment.name}"})

    def _moved(self, failed: str, target: str, error: BaseException, kind: str) -> None:
        if self.events.active:
            self.events.emit(FallbackTaken(self.name, self.clock.now(), failed, target, type(error).__name__, kind))

    # -- one pass over the deployments ---------------------------------------

    async def _over_deployments(
        self, request: ChatRequest | EmbedRequest, call: Callable[[Model], Awaitable[R]]
    ) -> R | _Outcome:
        outcome = _Outcome()
        token = self.budget.begin_request() if self.budget is not None else None
        try:
            return await self._each_deployment(request, call, outcome)
        finally:
            RetryBudget.end_request(token)

    def _candidates(self, request: ChatRequest | EmbedRequest, outcome: _Outcome) -> Iterator[DeploymentState]:
        """The deployments to try for one request, in the strategy's order: the one loop of
        ``chat``, ``embed`` and ``stream``. Each is marked tried; every attempt after the
        first is paid from the retry budget (the pass ends when it is empty); a deployment
        is yielded holding its breaker permit, so the caller must report how the call went
        (``succeeded``, ``failed`` or ``abandoned``)."""
        while (deployment := self._pick(request, outcome.tried)) is not None:
            if outcome.attempted and self.budget is not None:
                if not self.budget.try_spend():
                    return
                outcome.spent += 1
            outcome.tried.add(deployment.name)
            if not deployment.begin():
                continue  # a half-open probe slot was taken meanwhile
            outcome.attempted = True
            yield deployment

    def _answered(self, outcome: _Outcome) -> None:
        """A failover found an answer: the retry it spent comes back to the budget."""
        if outcome.spent and self.budget is not None:
            self.budget.refund()

    async def _each_deployment(
        self, request: ChatRequest | EmbedRequest, call: Callable[[Model], Awaitable[R]], outcome: _Outcome
    ) -> R | _Outcome:
        for deployment in self._candidates(request, outcome):
            started = self.clock.now()
            try:
                response = await call(deployment.model)
            except ModelError as error:
                deployment.failed(started, error)
                outcome.error = error
                if not _next_deployment_may_help(error):
                    return outcome
                self._moved(deployment.name, "next deployment", error, "deployment")
                continue
            except BaseException:
                deployment.abandoned()
                raise
            deployment.succeeded(started)
            self._answered(outcome)
            return self._tag(response, deployment)
        return outcome

    # -- fallback chain --------------------------------------------------------

    def _chain(self, outcome: _Outcome, visited: frozenset[str]) -> Iterator[Model]:
        """The fallback groups for ``outcome.error`` not yet visited by this request (the
        one walk of ``chat``, ``embed`` and ``stream``); raises when the error has no chain."""
        chain = _chain_for(outcome.error, self.fallbacks)
        if chain is None:
            raise self._unavailable(outcome)
        for target in chain:
            if target.name not in visited:
                self._moved(self.name, target.name, outcome.error or self._unavailable(outcome), "group")
                yield target

    @staticmethod
    def _next_target_failed(outcome: _Outcome, error: ModelError) -> None:
        """A fallback group failed: a client error other than a context or content refusal
        is raised (the request is wrong everywhere); anything else moves on down the chain."""
        if is_client_error(error) and not isinstance(error, ContextWindowExceeded | ContentFiltered):
            raise error
        outcome.error = error

    def _degrade_to(self, outcome: _Outcome) -> tuple[Model | str | None, ModelError]:
        """The degraded tier (None when there is none, or the failure is the request's own)."""
        final = outcome.error or self._unavailable(outcome)
        degrade = self.fallbacks.degrade
        return (None if degrade is None or is_client_error(final) else degrade), final

    async def _fall_back(
        self,
        request: ChatRequest | EmbedRequest,
        outcome: _Outcome,
        call: Callable[[Model], Awaitable[R]],
        degraded: Callable[[Model | str, ModelError], Awaitable[R]],
    ) -> R:
        for target in self._chain(outcome, _visited.get()):
            try:
                return await call(target)
            except ModelError as next_error:
                self._next_target_failed(outcome, next_error)
        degrade, final = self._degrade_to(outcome)
        if degrade is None:
            raise final
        return await degraded(degrade, final)

    # -- Model -----------------------------------------------------------------

    def _enter(self) -> contextvars.Token[frozenset[str]]:
        visited = _visited.get()
        if self.name in visited:
            raise NoDeploymentAvailable(f"fallback loop: group {self.name!r} was already tried for this request")
        return _visited.set(visited | {self.name})

    async def chat(self, request: ChatRequest) -> ChatResponse:
        return await self._route(request, lambda m: m.chat(request), self._degraded_chat(request))

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        async def no_degrade(target: Model | str, error: ModelError) -> EmbedResponse:
            raise error  # vectors from another model are not comparable: never degrade

        return await self._route(request, lambda m: m.embed(request), no_degrade)

    async def _route(
        self,
        request: ChatRequest | EmbedRequest,
        call: Callable[[Model], Awaitable[R]],
        degrade: Callable[[Model | str, ModelError], Awaitable[R]],
    ) -> R:
        """The deployments of this group, then its fallbacks, then ``degrade``: one walk for chat and embed."""
        misfit = self._nothing_fits(request)
        token = self._enter()
        try:
            if misfit is None:
                result = await self._over_deployments(request, call)
                if not isinstance(result, _Outcome):
                    return result
                outcome = result
            else:
                outcome = _Outcome(error=misfit)
            return await self._fall_back(request, outcome, call, degrade)
        finally:
            _visited.reset(token)

    def _degraded_chat(self, request: ChatRequest) -> Callable[[Model | str, ModelError], Awaitable[ChatResponse]]:
        async def degraded(target: Model | str, error: ModelError) -> ChatResponse:
            self._moved(self.name, _degrade_name(target), error, "degraded")
            if isinstance(target, str):
                return ChatResponse(
                    message=Message(role="assistant", content=target),
                    model="degraded",
                    provider="legato",
                    finish_reason="stop",
                    degraded=True,
                    tier=f"{self.name}/degraded:static",
                )
            response = await target.chat(request)
            return response.model_copy(update={"degraded": True, "tier": f"{self.name}/degraded:{target.name}"})

        return degraded

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        misfit = self._nothing_fits(request)
        visited = _visited.get()
        if self.name in visited:
            raise NoDeploymentAvailable(f"fallback loop: group {self.name!r} was already tried for this request")
        inside = visited | {self.name}
        outcome = _Outcome(error=misfit)
        if misfit is None:
            if self.budget is not None:
                RetryBudget.end_request(self.budget.begin_request())  # counts unless a Retry outside did
            for deployment in self._candidates(request, outcome):
                opened = await self._open(deployment.model, request, inside, deployment, outcome)
                if opened is None:
                    if outcome.error is not None and not _next_deployment_may_help(outcome.error):
                        break
                    continue
                self._answered(outcome)  # the failover opened a stream
                stream, head = opened[0], opened[1]
                async with self._relaying(opened, deployment):
                    for chunk in head:
                        yield chunk
                    async for chunk in stream:
                        yield chunk
                return
        async with aclosing(self._stream_fallback(request, outcome, inside)) as fallback:
            async for chunk in fallback:
                yield chunk

    async def _open(
        self,
        model: Model,
        request: ChatRequest,
        inside: frozenset[str],
        deployment: DeploymentState | None,
        outcome: _Outcome,
    ) -> tuple[AsyncIterator[ChatChunk], list[ChatChunk], float] | None:
        """Open a stream and pull its first chunk; None (and ``outcome.error``) on failure."""
        started = self.clock.now()
        token = _visited.set(inside)
        try:
            stream = model.stream(request)
            try:
                head = await open_stream(stream)
            except ModelError as error:
                await close_stream(stream)
                if deployment is not None:
                    deployment.failed(started, error)
                    self._moved(deployment.name, "next deployment", error, "deployment")
                outcome.error = error
                return None
            except BaseException:
                await close_stream(stream)
                if deployment is not None:
                    deployment.abandoned()
                raise
        finally:
            _visited.reset(token)
        return stream, head, started

    @asynccontextmanager
    async def _relaying(
        self,
        opened: tuple[AsyncIterator[ChatChunk], list[ChatChunk], float],
        deployment: DeploymentState | None,
    ) -> AsyncIterator[None]:
        """Around the relay of an opened stream (its chunks are yielded by the caller, so
        a chunk passes no async generator of the router's own): a failure is a cut
        stream of this deployment, the stream is closed however the relay ends."""
        stream, _, started = opened
        try:
            yield
        except ModelError as error:
            if deployment is not None:
                deployment.failed(started, error)
            raise interrupted(error, deployment.name if deployment else self.name) from error
        except BaseException:
            if deployment is not None:
                deployment.abandoned()  # the consumer stopped reading or was cancelled
            raise
        finally:
            await close_stream(stream)
        if deployment is not None:
            deployment.succeeded(started)

    async def _stream_fallback(
        self, request: ChatRequest, outcome: _Outcome, inside: frozenset[str]
    ) -> AsyncGenerator[ChatChunk, None]:
        for target in self._chain(outcome, inside):
            attempt = _Outcome()
            opened = await self._open(target, request, inside, None, attempt)
            if opened is None:
                assert attempt.error is not None
                self._next_target_failed(outcome, attempt.error)
                continue
            async with self._relaying(opened, None):
                for chunk in opened[1]:
                    yield chunk
                async for chunk in opened[0]:
                    yield chunk
            return
        degrade, final = self._degrade_to(outcome)
        if degrade is None:
            raise final
        self._moved(self.name, _degrade_name(degrade), final, "degraded")
        if isinstance(degrade, str):
            yield ChatChunk(text=degrade, model="degraded", provider="legato")
            yield ChatChunk(finish_reason="stop", model="degraded", provider="legato")
            return
        opened = await self._open(degrade, request, inside, None, _Outcome())
        if opened is None:
            raise final
        async with self._relaying(opened, None):
            for chunk in opened[1]:
                yield chunk
            async for chunk in opened[0]:
                yield chunk

    async def aclose(self) -> None:
        for d in self.deployments:
            await d.deployment.model.aclose()


def _degrade_name(target: Model | str) -> str:
    return "degraded:static" if isinstance(target, str) else f"degraded:{target.name}"
