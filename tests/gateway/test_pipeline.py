"""The gateway's policies end to end, with real SQLite, a controllable clock and a counted
stand-in for the service call."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from codey.backends.fake import FakeBackend
from codey.config import ApiKey, Settings, load_settings
from codey.errors import BackendError, Forbidden, InvalidRequest, RateLimited, Unauthorized
from codey.gateway.auth import KeyRing, Principal, hash_key, key_from_headers
from codey.gateway.job import Answer, Job
from codey.gateway.pipeline import Call, Gateway, ServicesOn
from codey.services import Services
from codey.store.conversations import ConversationStore
from codey.store.sqlite import Database

LA = ZoneInfo("America/Los_Angeles")


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current


class Work:
    """Counts the calls the gateway lets through."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls = 0
        self.error = error

    async def __call__(self, services: object) -> Answer:
        self.calls += 1
        if self.error:
            raise self.error
        return Answer(
            {"text": "def f(): pass"},
            prompt_tokens=7,
            completion_tokens=5,
            output_text="def f(): pass",
        )


def make_gateway(tmp_path: Path, clock: FakeClock, **limits: object) -> Gateway:
    settings = load_settings(
        limits={"completion": {"requests_per_day": 2, "requests_per_minute": None, **limits}},
        cache={"ttl_seconds": {"completion": 3600, "generation": 1, "chat": 3600}},
    )
    database = Database(tmp_path / "g.db")
    return Gateway.build(settings, database, services_on(database, settings), clock=clock)


def services_on(database: Database, settings: Settings) -> ServicesOn:
    """The services over the scripted backend, whatever the model (the stand-in ignores them)."""
    services = Services.over(FakeBackend(), ConversationStore(database), settings)
    return lambda model, log, background: services


class StandIn(Job):
    """A job of any service whose work is a counted stand-in."""

    dialect = "native"

    def __init__(
        self, service: str, text: str, cache: bool, deterministic: bool, work: Work
    ) -> None:
        self.service = service  # type: ignore[misc]
        self.text, self.cache, self.deterministic, self.work = text, cache, deterministic, work

    def billed_text(self) -> str:
        return self.text

    def cache_request(self) -> dict[str, object] | None:
        return {"prefix": self.text} if self.cache else None

    def asked_temperature(self) -> float | None:
        return 0.0 if self.deterministic else 0.7

    async def run(self, services: Services) -> Answer:
        return await self.work(services)


def call(
    service: str = "completion",
    text: str = "x = 1",
    cache: bool = True,
    deterministic: bool = True,
    work: Work | None = None,
    **kw: bool,
) -> Call:
    job = StandIn(service, text, cache, deterministic, work or Work())
    return Call(Principal("team"), job, "m", **kw)


async def test_the_quota_resets_at_midnight_in_the_zone(tmp_path: Path) -> None:
    clock = FakeClock(datetime(2026, 11, 25, 23, 59, 58, tzinfo=LA))
    gateway = make_gateway(tmp_path, clock)
    work = Work()
    for n in range(2):
        await gateway.serve(call(text=f"a{n}", work=work))
    with pytest.raises(RateLimited) as caught:
        await gateway.serve(call(text="a2", work=work))
    assert caught.value.retry_after == 2
    clock.current += timedelta(seconds=3)  # 00:00:01 on the 26th
    await gateway.serve(call(text="a3", work=work))
    assert work.calls == 3


async def test_the_day_after_summer_time_ends_is_25_hours(tmp_path: Path) -> None:
    clock = FakeClock(datetime(2026, 11, 1, 0, 30, tzinfo=LA))
    gateway = make_gateway(tmp_path, clock, requests_per_day=1)
    await gateway.serve(call(text="a", work=Work()))
    with pytest.raises(RateLimited) as caught:
        await gateway.serve(call(text="b", work=Work()))
    assert caught.value.retry_after == 24 * 3600 + 1800
    clock.current = datetime(2026, 11, 1, 23, 59, 59, tzinfo=LA)
    with pytest.raises(RateLimited):
        await gateway.serve(call(text="c", work=Work()))
    clock.current = datetime(2026, 11, 2, 0, 0, 1, tzinfo=LA)
    await gateway.serve(call(text="d", work=Work()))


async def test_a_cache_hit_uses_no_quota_and_no_engine(tmp_path: Path) -> None:
    clock = FakeClock(datetime(2026, 11, 25, 12, tzinfo=LA))
    gateway = make_gateway(tmp_path, clock)
    work = Work()
    first, cached_first = await gateway.serve(call(work=work))
    for _ in range(5):
        again, cached = await gateway.serve(call(work=work))
        assert cached and again == first
    assert not cached_first
    assert work.calls == 1
    assert (await gateway.counters.get("team|completion|2026-11-25"))["requests"] == 1


async def test_no_cache_skips_the_lookup_and_no_store_skips_the_fill(tmp_path: Path) -> None:
    clock = FakeClock(datetime(2026, 11, 25, 12, tzinfo=LA))
    gateway = make_gateway(tmp_path, clock, requests_per_day=10)
    work = Work()
    await gateway.serve(call(no_store=True, work=work))
    await gateway.serve(call(work=work))  # nothing was stored: a miss, which stores
    await gateway.serve(call(work=work))  # a hit
    await gateway.serve(call(no_cache=True, work=work))  # lookup skipped
    assert work.calls == 3


async def test_an_entry_past_its_ttl_is_a_miss(tmp_path: Path) -> None:
    clock = FakeClock(datetime(2026, 11, 25, 12, tzinfo=LA))
    gateway = make_gateway(tmp_path, clock)
    work = Work()
    await gateway.serve(call("generation", work=work))  # generation's TTL here is 1 s
    await gateway.serve(call("generation", work=work))
    assert work.calls == 1
    await asyncio.sleep(1.1)
    await gateway.serve(call("generation", work=work))
    assert work.calls == 2


async def test_sampled_answers_are_not_cached_by_default(tmp_path: Path) -> None:
    gateway = make_gateway(tmp_path, FakeClock(datetime(2026, 11, 25, 12, tzinfo=LA)))
    work = Work()
    await gateway.serve(call(deterministic=False, work=work))
    await gateway.serve(call(deterministic=False, work=work))
    assert work.calls == 2


async def test_failures_inside_codey_are_refunded_client_errors_are_not(tmp_path: Path) -> None:
    clock = FakeClock(datetime(2026, 11, 25, 12, tzinfo=LA))
    gateway = make_gateway(tmp_path, clock)
    with pytest.raises(BackendError):
        await gateway.serve(call(text="a", work=Work(BackendError("engine died"))))
    counters = await gateway.counters.get("team|completion|2026-11-25")
    assert counters["requests"] == 0
    with pytest.raises(InvalidRequest):
        await gateway.serve(call(text="b", work=Work(InvalidRequest("too long"))))
    assert (await gateway.counters.get("team|completion|2026-11-25"))["requests"] == 1


async def test_every_outcome_has_one_ledger_row_with_its_cost(tmp_path: Path) -> None:
    clock = FakeClock(datetime(2026, 11, 25, 12, tzinfo=LA))
    gateway = make_gateway(tmp_path, clock)
    text = "x = compute( 1 )"  # 12 billable characters
    await gateway.serve(call(text=text, work=Work()))  # served
    await gateway.serve(call(text=text, work=Work()))  # cached
    await gateway.serve(call(text="other", work=Work()))  # served
    with pytest.raises(RateLimited):
        await gateway.serve(call(text="third", work=Work()))  # over the quota of 2
    totals = gateway.ledger.by_service("2026-11-25", "team")["completion"]
    assert totals["requests"] == 4
    assert totals["succeeded"] == 3 and totals["cache_hits"] == 1 and totals["rejected"] == 1
    output = len("deff():pass")
    expected = ((12 + 5) * 0.00025 + 2 * output * 0.0005) / 1000  # the cached row costs nothing
    assert totals["cost_usd"] == pytest.approx(expected)
    assert totals["prompt_tokens"] == 14 and totals["completion_tokens"] == 10


async def test_a_daily_character_budget(tmp_path: Path) -> None:
    gateway = make_gateway(
        tmp_path, FakeClock(datetime(2026, 11, 25, 12, tzinfo=LA)), input_chars_per_day=10
    )
    await gateway.serve(call(text="abcdef", work=Work()))
    with pytest.raises(RateLimited, match="10 input characters"):
        await gateway.serve(call(text="ghijkl", work=Work()))


async def test_per_minute_limit_without_waiting(tmp_path: Path) -> None:
    settings = load_settings(
        limits={"wait_seconds": 0, "chat": {"requests_per_minute": 3, "requests_per_day": 100}}
    )
    database = Database(tmp_path / "g.db")
    gateway = Gateway.build(settings, database, services_on(database, settings))
    results = await asyncio.gather(
        *(gateway.serve(call("chat", text=f"q{n}", cache=False, work=Work())) for n in range(8)),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, RateLimited)]
    assert len(refused) == 5
    assert all(1 <= r.retry_after <= 60 for r in refused)
    # refused requests gave their daily unit back
    day = gateway.quota_day.day(gateway.clock.now())
    assert (await gateway.counters.get(f"team|chat|{day}"))["requests"] == 3


async def test_a_requests_closing_writes_share_one_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = make_gateway(tmp_path, FakeClock(datetime(2026, 11, 25, 12, tzinfo=LA)))
    db = gateway.ledger._db
    groups: list[int] = []
    commit = db._commit

    def counted(jobs: list) -> list:  # type: ignore[type-arg]
        groups.append(len(jobs))
        return commit(jobs)

    monkeypatch.setattr(db, "_commit", counted)
    await gateway.serve(call(text="a", work=Work()))
    assert groups == [1, 3]  # the admission; then counters, ledger row and cache fill
    groups.clear()
    with pytest.raises(BackendError):
        await gateway.serve(call(text="b", work=Work(BackendError("engine died"))))
    assert groups == [1, 2]  # the admission; then the refund and the ledger row
    groups.clear()
    await gateway.serve(call(text="a", work=Work()))
    assert groups == [1]  # a hit in the memory tier: the ledger row alone


def test_keys_headers_and_services() -> None:
    ring = KeyRing([ApiKey(name="ci", sha256=hash_key("secret"), services=["completion"])])
    assert ring.principal("secret").name == "ci"
    with pytest.raises(Unauthorized, match="not valid"):
        ring.principal("wrong")
    with pytest.raises(Unauthorized, match="needs an API key"):
        ring.principal(None)
    with pytest.raises(Forbidden, match="generation"):
        ring.principal("secret").authorize("generation")
    assert key_from_headers({"authorization": "Bearer k1"}) == "k1"
    assert key_from_headers({"x-api-key": "k2"}) == "k2"
    assert key_from_headers({"x-goog-api-key": "k3"}) == "k3"
    assert KeyRing([]).principal(None).name == "anonymous"
