"""The policies every request passes, in one place: authorisation, response cache, daily
quota and budgets, per-minute limit, then the call, then counters, ledger and cache fill.

Cache hits come before the limits so that they use no quota; a request that fails inside codey
(status 500 and up, or the client going away) gets its daily request back. The writes that
close a request are submitted together (with SQLite: one transaction on the database's writer
thread) and awaited before the response leaves, so its ledger row is durable by then.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from codey.backends.base import Delta
from codey.config import Service, ServiceLimits, Settings
from codey.errors import CodeyError, RateLimited
from codey.gateway.attempts import RouteLog
from codey.gateway.auth import KeyRing, Principal
from codey.gateway.cache import MemoryTier, RedisTier, ResponseCache, SQLiteTier, Tier, cache_key
from codey.gateway.clock import Clock, QuotaDay, SystemClock
from codey.gateway.counters import Counters, RedisCounters, SQLiteCounters
from codey.gateway.job import Answer, Dialect, Job
from codey.gateway.ledger import Ledger, LedgerRow
from codey.gateway.metrics import Metrics
from codey.gateway.pricing import PriceList, billable_characters
from codey.gateway.ratelimit import PerMinuteLimiter
from codey.services import Services
from codey.store.redis import connect
from codey.store.sqlite import Database


@dataclass(frozen=True)
class Call:
    """One request as the gateway sees it: who asks, the dialect's job, and its model."""

    principal: Principal
    job: Job
    model: str
    """The canonical model name (aliases resolved at the edge): ledger, cache and prices use it."""
    no_cache: bool = False
    no_store: bool = False
    batch: bool = False
    """A batch job's line: its own daily quota, no per-minute limit, batch prices, and run
    behind interactive requests."""

    @property
    def service(self) -> Service:
        return self.job.service

    @property
    def dialect(self) -> Dialect:
        return self.job.dialect


@dataclass(frozen=True)
class Ticket:
    """An admitted request, to be closed with `complete` or `fail`."""

    call: Call
    counter_key: str
    day: str
    started: float
    input_chars: int
    waited: float = 0.0
    route: RouteLog = field(default_factory=RouteLog)
    """The attempts the router made for it, written by the router itself."""


ServicesOn = Callable[[str, RouteLog, bool], Services]
"""The services over a model's router, recording the attempts of its calls in the log; the
flag asks for background scheduling (batch work)."""

Closing = Callable[[int, Answer | None, str | None], Coroutine[Any, Any, Any] | None]
"""A write that commits with the request's ledger row, given its status and its answer or error
(a batch line's result: both are written or neither)."""


class Gateway:
    def __init__(
        self,
        settings: Settings,
        *,
        counters: Counters,
        limiter: PerMinuteLimiter,
        cache: ResponseCache | None,
        ledger: Ledger,
        services: ServicesOn,
        clock: Clock | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.services = services
        self.metrics = metrics or Metrics()
        self.keyring = KeyRing(settings.auth.keys)
        self.counters = counters
        self.limiter = limiter
        self.cache = cache
        self.ledger = ledger
        self.prices = PriceList(settings.pricing)
        self.quota_day = QuotaDay(settings.limits.timezone)
        self.clock = clock or SystemClock()

    @classmethod
    def build(
        cls,
        settings: Settings,
        database: Database,
        services: ServicesOn,
        clock: Clock | None = None,
        metrics: Metrics | None = None,
    ) -> Gateway:
        """SQLite for counters and cache by default; Redis for both when `redis_url` is set."""
        redis = connect(settings.redis_url) if settings.redis_url else None
        counters: Counters = RedisCounters(redis) if redis else SQLiteCounters(database)
        tiers: list[Tier] = []
        c = settings.cache
        if c.memory_entries:
            tiers.append(MemoryTier(c.memory_entries))
        if c.persistent:
            tiers.append(RedisTier(redis) if redis else SQLiteTier(database))
        return cls(
            settings,
            counters=counters,
            limiter=PerMinuteLimiter(settings.redis_url, wait_seconds=settings.limits.wait_seconds),
            cache=ResponseCache(tiers, c.ttl_seconds) if c.enabled and tiers else None,
            ledger=Ledger(database),
            services=services,
            clock=clock,
            metrics=metrics,
        )

    def limits_for(self, principal: Principal, service: Service) -> ServiceLimits:
        return principal.limits.get(service) or self.settings.limits.for_service(service)

    async def serve(self, call: Call, closing: Closing | None = None) -> tuple[Answer, bool]:
        """The whole pipeline around the call's job: the cache, admission, the job on its
        model's services, the closing writes (`closing` among them); says whether the answer
        came from the cache."""
        call.principal.authorize(call.service)
        key = await self._cache_key(call)
        if key is not None and self.cache is not None and not call.no_cache:
            started = time.perf_counter()
            hit = await self.cache.get(key, call.service)
            if hit is not None:
                answer = Answer(**hit)
                record = self._record(call, self._today(), started, answer, status=200, cached=True)
                await _together(record, closing(200, answer, None) if closing else None)
                return answer, True
        ticket = await self.admit(call, closing)
        try:
            answer = await call.job.run(self.services(call.model, ticket.route, call.batch))
        except BaseException as exc:
            await self.fail(ticket, exc, closing)
            raise
        await self.complete(ticket, answer, None if call.no_store else key, closing)
        return answer, False

    async def stream(self, call: Call) -> AsyncGenerator[Delta, None]:
        """Admit a streamed call and hand back its deltas, ending with the one that carries the
        finish reason; the ledger hears how it ended (completed, failed, or the client gone)
        and the engine stream is closed in every case. Streams skip the cache.

        The first delta is pulled before this returns, so that bad input and a refused quota
        still get a proper error status instead of a broken stream. Iterate the result to its
        end, or close it (contextlib.aclosing)."""
        ticket = await self.admit(call)
        try:
            deltas = call.job.run_stream(self.services(call.model, ticket.route, call.batch))
            first = await anext(deltas)
        except BaseException as exc:
            await self.fail(ticket, exc)
            raise

        async def relay() -> AsyncGenerator[Delta, None]:
            delta, text = first, ""
            try:
                while True:
                    text += delta.text
                    yield delta
                    if delta.finish_reason is not None:
                        break
                    delta = await anext(deltas)
            except BaseException as exc:
                await self.fail(ticket, exc)
                raise
            finally:
                await deltas.aclose()  # type: ignore[attr-defined]
            answer = Answer({}, delta.prompt_tokens, delta.completion_tokens, text)
            await self.complete(ticket, answer)

        return relay()

    def counter_key(self, principal: str, service: Service, day: str, batch: bool) -> str:
        return f"{principal}|{service}|batch|{day}" if batch else f"{principal}|{service}|{day}"

    def batch_quota(self, service: Service) -> int | None:
        return self.settings.batch.requests_per_day.for_service(service)

    async def admit(self, call: Call, closing: Closing | None = None) -> Ticket:
        """Check the daily quota and budgets, then take a per-minute slot; a refusal is
        recorded in the ledger and raised as RateLimited. A batch line counts against the
        batch quota and takes no per-minute slot: the batch runner paces itself."""
        call.principal.authorize(call.service)
        started = time.perf_counter()
        now = self.clock.now()
        day = self.quota_day.day(now)
        name, service = call.principal.name, call.service
        key = self.counter_key(name, service, day, call.batch)
        limits = self.limits_for(call.principal, service)
        quota = self.batch_quota(service) if call.batch else limits.requests_per_day
        kind = f"batch {service}" if call.batch else service
        input_chars = billable_characters(call.job.billed_text())
        counted, waited = False, 0.0
        try:
            if not call.batch:
                await self._check_budgets(key, limits, input_chars, now)
            counted, used = await self.counters.admit(key, quota)
            if not call.batch:
                self.metrics.quota(service, name, used, quota)
            if not counted:
                raise RateLimited(
                    f"{name} has used its {quota} {kind} requests for {day}.",
                    retry_after=self.quota_day.seconds_to_reset(now),
                )
            if not call.batch:
                waited = await self.limiter.acquire(name, service, limits.requests_per_minute)
        except RateLimited as exc:
            record = self._record(
                call, day, started, None, status=429, error=exc.message, input_chars=input_chars
            )
            # Refused by the per-minute limit: the daily request goes back.
            refund = self.counters.add(key, {"requests": -1}) if counted else None
            await _together(refund, record, closing(429, None, exc.message) if closing else None)
            raise
        return Ticket(call, key, day, started, input_chars, waited)

    async def complete(
        self,
        ticket: Ticket,
        answer: Answer,
        cache_key: str | None = None,
        closing: Closing | None = None,
    ) -> None:
        """Count the answer's characters and tokens, write its ledger row and, given a key,
        fill the cache with it; all three at once, so that with SQLite they share one
        transaction. Returns when all are written."""
        output_chars = billable_characters(answer.output_text)
        tokens = answer.prompt_tokens + answer.completion_tokens
        count = self.counters.add(
            ticket.counter_key,
            {"input_chars": ticket.input_chars, "output_chars": output_chars, "tokens": tokens},
        )
        fill = None
        if cache_key is not None and self.cache is not None:
            fill = self.cache.put(cache_key, ticket.call.service, answer.__dict__)
        record = self._record(
            ticket.call,
            ticket.day,
            ticket.started,
            answer,
            status=200,
            waited=ticket.waited,
            input_chars=ticket.input_chars,
            output_chars=output_chars,
            route=ticket.route,
        )
        await _together(count, record, fill, closing(200, answer, None) if closing else None)

    async def fail(
        self, ticket: Ticket, exc: BaseException, closing: Closing | None = None
    ) -> None:
        kind = type(exc).__name__
        if isinstance(exc, CodeyError):
            status, error, kind = exc.status, exc.message, exc.kind
        elif isinstance(exc, asyncio.CancelledError):
            status, error = 499, "the client went away"
        else:
            status, error = 500, f"{type(exc).__name__}: {exc}"
        refund = None
        if status >= 499:  # a failure inside codey, not the caller's: give the request back
            refund = self.counters.add(ticket.counter_key, {"requests": -1})
        record = self._record(
            ticket.call,
            ticket.day,
            ticket.started,
            None,
            status=status,
            error=error,
            waited=ticket.waited,
            kind=kind,
            input_chars=ticket.input_chars,
            route=ticket.route,
        )
        await _together(refund, record, closing(status, None, error) if closing else None)

    async def _check_budgets(
        self, key: str, limits: ServiceLimits, input_chars: int, now: Any
    ) -> None:
        budgets = (limits.input_chars_per_day, limits.output_chars_per_day, limits.tokens_per_day)
        if all(b is None for b in budgets):
            return
        used = await self.counters.get(key)
        over = [
            (name, budget)
            for name, budget, spent in (
                ("input characters", limits.input_chars_per_day, used["input_chars"] + input_chars),
                ("output characters", limits.output_chars_per_day, used["output_chars"] + 1),
                ("tokens", limits.tokens_per_day, used["tokens"] + 1),
            )
            if budget is not None and spent > budget
        ]
        if over:
            name, budget = over[0]
            raise RateLimited(
                f"This request would pass the daily budget of {budget} {name}.",
                retry_after=self.quota_day.seconds_to_reset(now),
            )

    async def _cache_key(self, call: Call) -> str | None:
        request = call.job.cache_request() if self.cache is not None else None
        if request is None:
            return None
        temperature = call.job.asked_temperature()
        if temperature is None:
            temperature = self.settings.defaults_for(call.service).temperature
        if temperature != 0 and not self.settings.cache.all_temperatures:
            return None  # a sampled answer is one of many
        return await cache_key(call.service, call.model, request)

    def _today(self) -> str:
        return self.quota_day.day(self.clock.now())

    async def _record(
        self,
        call: Call,
        day: str,
        started: float,
        answer: Answer | None,
        *,
        status: int,
        cached: bool = False,
        error: str | None = None,
        waited: float = 0.0,
        kind: str | None = None,
        input_chars: int | None = None,
        output_chars: int | None = None,
        route: RouteLog | None = None,
    ) -> None:
        """Write the ledger row and feed the metrics; character counts already made for the
        request are passed in rather than counted again."""
        if input_chars is None:
            input_chars = billable_characters(call.job.billed_text())
        if output_chars is None:
            output_chars = billable_characters(answer.output_text) if answer else 0
        attempts = route.attempts if route else []
        answered = route.answered if route else None
        last = answered or (attempts[-1] if attempts else None)
        cost = 0.0
        if answer is not None and not cached:
            cost = self.prices.cost(
                call.service, call.model, input_chars, output_chars, batch=call.batch
            )
        row = LedgerRow(
            ts=time.time(),
            day=day,
            principal=call.principal.name,
            service=call.service,
            dialect=call.dialect,
            model=call.model,
            backend="cache" if cached else last.backend if last else "",
            prompt_tokens=0 if cached or answer is None else answer.prompt_tokens,
            completion_tokens=0 if cached or answer is None else answer.completion_tokens,
            input_chars=input_chars,
            output_chars=output_chars,
            latency_ms=(time.perf_counter() - started) * 1000,
            waited_ms=waited * 1000,
            cached=cached,
            status=status,
            cost_usd=cost,
            error=error,
            deployment=last.deployment if last else None,
            attempts=len(attempts),
            batch=call.batch,
        )
        self.metrics.observe(row, kind)
        await self.ledger.record(row)


async def _together(*writes: Coroutine[Any, Any, None] | None) -> None:
    """Await the writes of one request together: submitted in the same turn of the event
    loop, they reach the SQLite writer thread as one group (one transaction, one hop)."""
    await asyncio.gather(*(w for w in writes if w is not None))
