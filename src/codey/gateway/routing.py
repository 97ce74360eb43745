"""A model served by one or more deployments, behind the one Backend interface.

Each call goes to the deployment with the fewest requests in flight for its weight. A failure
that another try may mend (connection refused or dropped, 429, 5xx, timeout, a full queue) is
retried with exponential backoff and jitter, on another deployment first, honouring Retry-After;
a stream is never retried once its first token has left. Each deployment has a circuit breaker.
When every try fails, the model's fallback model gets the call. Every attempt is counted in
the metrics and, for calls made through `Router.traced(log)`, written to that request's log,
from which the ledger learns who answered.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_random_exponential

from codey.backends.base import Backend, Delta, Generation, Prompt, SamplingParams
from codey.backends.fim import FimTemplate
from codey.config import ResilienceSettings
from codey.errors import (
    Cancelled,
    EngineCrashed,
    InvalidRequest,
    NoDeployment,
    Overloaded,
    UpstreamError,
    UpstreamTimeout,
)
from codey.gateway.attempts import Attempt, RouteLog
from codey.gateway.breaker import Breaker
from codey.gateway.metrics import Metrics

T = TypeVar("T")
Opened = tuple[Delta, AsyncIterator[Delta]]


@dataclass(eq=False)
class Member:
    """One deployment of the model, with what the router knows of it."""

    name: str
    backend: Backend
    weight: float
    max_concurrency: int
    breaker: Breaker
    outstanding: int = 0
    credit: float = 0.0
    """Smooth weighted round robin among equally loaded deployments (nginx's algorithm)."""
    outcomes: Counter[str] = field(default_factory=Counter)

    def load(self) -> float:
        return (self.outstanding + 1) / self.weight

    def free(self) -> bool:
        return self.outstanding < self.max_concurrency and self.breaker.ready_in() == 0


def _gauges(member: Member) -> tuple[Callable[[], float], Callable[[], float]]:
    return (lambda: member.outstanding), (lambda: float(member.breaker.state != "closed"))


def retryable(exc: BaseException) -> bool:
    return (isinstance(exc, UpstreamError) and exc.retryable) or isinstance(exc, Overloaded)


def outcome_of(exc: BaseException | None) -> str:
    if exc is None:
        return "ok"
    if isinstance(exc, asyncio.CancelledError | GeneratorExit | Cancelled):
        return "cancelled"
    if isinstance(exc, InvalidRequest):
        return "invalid"
    if isinstance(exc, EngineCrashed):
        return "crashed"
    if isinstance(exc, Overloaded):
        return "overloaded"
    if isinstance(exc, UpstreamTimeout):
        return "timeout"
    if isinstance(exc, UpstreamError):
        if exc.upstream_status == 429:
            return "rate_limited"
        return "unreachable" if exc.upstream_status is None else "upstream_error"
    return "error"


class Router(Backend):
    name = "router"

    def __init__(
        self,
        model: str,
        members: list[Member],
        resilience: ResilienceSettings,
        metrics: Metrics | None = None,
        fallback: Router | None = None,
    ) -> None:
        self.model_id = model
        self.members = members
        self.resilience = resilience
        self.metrics = metrics
        self.fallback = fallback
        if metrics is not None:
            for member in members:
                metrics.watch_deployment(member.name, *_gauges(member))

    @property
    def context_length(self) -> int:
        return min(m.backend.context_length for m in self.members)

    @property
    def fim(self) -> FimTemplate | None:  # type: ignore[override]
        """The deployments' fill-in-the-middle markers, if they all have the same."""
        templates = {m.backend.fim for m in self.members}
        return templates.pop() if len(templates) == 1 else None

    async def count_tokens(self, prompt: Prompt) -> int:
        """From the first deployment that can count, the free and least loaded first."""
        ranked = sorted(self.members, key=lambda m: (not m.free(), m.load()))
        for member in ranked[:-1]:
            try:
                return await member.backend.count_tokens(prompt)
            except UpstreamError as exc:
                if not exc.retryable:
                    raise
        return await ranked[-1].backend.count_tokens(prompt)

    def traced(self, log: RouteLog, *, background: bool = False) -> Backend:
        """This router as a backend whose calls write their attempts into `log`; background
        calls (batch work) ask engines that schedule to run them behind interactive ones."""
        return _Traced(self, log, background)

    async def generate(
        self, prompt: Prompt, params: SamplingParams, log: RouteLog | None = None
    ) -> Generation:
        async def call(member: Member) -> Generation:
            return await member.backend.generate(prompt, params)

        try:
            async with asyncio.timeout(self.resilience.total_timeout):
                generation, member = await self._run(call, log)
        except TimeoutError:
            raise self._too_slow() from None
        self._settle(member, None, log)
        return generation

    async def stream(
        self, prompt: Prompt, params: SamplingParams, log: RouteLog | None = None
    ) -> AsyncIterator[Delta]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.resilience.total_timeout
        first_token = self.resilience.first_token_timeout

        async def call(member: Member) -> Opened:
            deltas = member.backend.stream(prompt, params)
            try:
                first = await asyncio.wait_for(anext(deltas), first_token)
            except TimeoutError:
                await deltas.aclose()  # type: ignore[attr-defined]
                raise UpstreamTimeout(
                    f"{member.name} sent no token within {first_token:g} s."
                ) from None
            except BaseException:
                await deltas.aclose()  # type: ignore[attr-defined]
                raise
            return first, deltas

        try:
            async with asyncio.timeout_at(deadline):
                (delta, rest), member = await self._run(call, log)
        except TimeoutError:
            raise self._too_slow() from None
        failure: BaseException | None = None
        try:
            yield delta
            while delta.finish_reason is None:
                try:
                    delta = await asyncio.wait_for(anext(rest), deadline - loop.time())
                except TimeoutError:
                    raise UpstreamTimeout(
                        f"{member.name} did not finish within the total timeout."
                    ) from None
                yield delta
        except BaseException as exc:
            failure = exc
            raise
        finally:
            await rest.aclose()  # type: ignore[attr-defined]
            self._settle(member, failure, log)

    def status(self) -> list[dict[str, Any]]:
        """Each deployment as the dashboard shows it."""
        return [
            {
                "model": self.model_id,
                "deployment": m.name,
                "backend": m.backend.name,
                "weight": m.weight,
                "in_flight": m.outstanding,
                "breaker": m.breaker.state,
                "state": m.backend.state,
                "attempts": dict(m.outcomes),
            }
            for m in self.members
        ]

    async def close(self) -> None:
        await asyncio.gather(*(m.backend.close() for m in self.members))

    async def _run(
        self, call: Callable[[Member], Awaitable[T]], log: RouteLog | None
    ) -> tuple[T, Member]:
        """`call` on the best deployment, retried and failed over; the member returned is
        still held, to be settled by the caller when its answer is complete."""
        r = self.resilience
        tried: set[str] = set()
        backoff = wait_random_exponential(multiplier=r.backoff_initial, max=r.backoff_max)

        failures: list[BaseException] = []

        def wait(state: RetryCallState) -> float:
            if any(m.free() and m.name not in tried for m in self.members):
                return 0.0  # another deployment can take it now: fail over at once
            # Wait out a Retry-After, not an open breaker: that one is for later requests.
            closed = [m.breaker.ready_in() for m in self.members if m.breaker.state == "closed"]
            soonest = min(closed, default=math.inf)
            if soonest > r.max_retry_after:
                return 0.0  # nothing worth waiting for: the next try goes to the fallback
            return max(backoff(state), soonest)

        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(r.max_attempts),
                wait=wait,
                retry=retry_if_exception(retryable),
                reraise=True,
            ):
                with attempt:
                    member = self._take(tried)
                    try:
                        return await call(member), member
                    except BaseException as exc:
                        self._settle(member, exc, log)
                        failures.append(exc)
                        raise
        except (UpstreamError, Overloaded, NoDeployment) as exc:
            if self.fallback is not None and (retryable(exc) or isinstance(exc, NoDeployment)):
                return await self.fallback._run(call, log)
            if isinstance(exc, NoDeployment) and failures:
                raise failures[-1] from None  # what went wrong says more than what is left
            raise
        raise AssertionError("tenacity ends with a result or an exception")

    def _take(self, tried: set[str]) -> Member:
        free = [m for m in self.members if m.free()]
        if not free:
            wait = min(m.breaker.ready_in() for m in self.members)
            raise NoDeployment(
                f"No deployment of {self.model_id} can take a call now: "
                + ", ".join(f"{m.name} {self._state(m)}" for m in self.members)
                + ".",
                retry_after=max(math.ceil(wait), 1),
            )
        pool = [m for m in free if m.name not in tried] or free
        least = min(m.load() for m in pool)
        tied = [m for m in pool if m.load() == least]
        for m in tied:
            m.credit += m.weight
        member = max(tied, key=lambda m: m.credit)
        member.credit -= sum(m.weight for m in tied)
        member.breaker.acquire()
        member.outstanding += 1
        tried.add(member.name)
        return member

    def _settle(self, member: Member, exc: BaseException | None, log: RouteLog | None) -> None:
        """Release the member and tell its breaker, the metrics and the request's log."""
        member.outstanding -= 1
        outcome = outcome_of(exc)
        member.outcomes[outcome] += 1
        if outcome in ("ok", "invalid"):
            member.breaker.success()
        elif outcome in ("cancelled", "overloaded", "crashed"):
            # The engine process has its own supervisor, which refuses calls until it is back.
            member.breaker.release()
        else:
            member.breaker.failure()
            if isinstance(exc, UpstreamError) and exc.retry_after:
                member.breaker.cool(exc.retry_after)
        if self.metrics is not None:
            self.metrics.attempt(self.model_id, member.name, outcome)
        if log is not None:
            log.attempts.append(Attempt(self.model_id, member.name, member.backend.name, outcome))

    def _too_slow(self) -> UpstreamTimeout:
        seconds = self.resilience.total_timeout
        return UpstreamTimeout(f"No deployment of {self.model_id} answered within {seconds:g} s.")

    @staticmethod
    def _state(member: Member) -> str:
        if member.breaker.state != "closed":
            return f"breaker {member.breaker.state.replace('_', '-')}"
        if member.outstanding >= member.max_concurrency:
            return f"at its {member.max_concurrency} requests in flight"
        return "cooling down after Retry-After"


class _Traced(Backend):
    """A router seen by one request: the same deployments, attempts written to its log."""

    name = "router"

    def __init__(self, router: Router, log: RouteLog, background: bool) -> None:
        self.router = router
        self.log = log
        self.background = background
        self.model_id = router.model_id

    @property
    def context_length(self) -> int:
        return self.router.context_length

    @property
    def fim(self) -> FimTemplate | None:  # type: ignore[override]
        return self.router.fim

    async def count_tokens(self, prompt: Prompt) -> int:
        return await self.router.count_tokens(prompt)

    async def generate(self, prompt: Prompt, params: SamplingParams) -> Generation:
        return await self.router.generate(prompt, self._marked(params), self.log)

    def stream(self, prompt: Prompt, params: SamplingParams) -> AsyncIterator[Delta]:
        return self.router.stream(prompt, self._marked(params), self.log)

    def _marked(self, params: SamplingParams) -> SamplingParams:
        return replace(params, background=True) if self.background else params
