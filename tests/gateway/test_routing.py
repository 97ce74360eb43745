"""The router against misbehaving OpenAI-compatible upstreams: retries, Retry-After, timeouts,
streams cut short, breakers, least-outstanding balancing and the fallback model."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from codey.backends.base import ChatPrompt, Message, SamplingParams
from codey.config import Deployment, ModelRoute, ResilienceSettings, Settings
from codey.errors import NoDeployment, UpstreamError, UpstreamTimeout
from codey.gateway.attempts import RouteLog
from codey.gateway.metrics import Metrics
from codey.runtime import build_routers
from tests.fault_upstream import FaultUpstream

PROMPT = ChatPrompt([Message("user", "write a function that adds two numbers")])
PARAMS = SamplingParams(max_tokens=8, temperature=0)
FAST = dict(backoff_initial=0.05, backoff_max=0.2, breaker_reset_seconds=0.5)


_made: list[dict] = []


@pytest.fixture(autouse=True)
async def close_routers():
    yield
    while _made:
        for router in _made.pop().values():
            await router.close()


@pytest.fixture
def upstreams() -> Iterator[list[FaultUpstream]]:
    started = [FaultUpstream(), FaultUpstream()]
    yield started
    for upstream in started:
        upstream.close()


def routers(
    upstreams: list[FaultUpstream], fallback: FaultUpstream | None = None, **resilience: float
) -> tuple[dict, Metrics]:
    models = {
        "coder": ModelRoute(
            deployments=[
                Deployment(name=f"up{i}", backend="openai", url=u.url, model_id="m")
                for i, u in enumerate(upstreams)
            ],
            fallback="spare" if fallback else None,
        )
    }
    if fallback:
        models["spare"] = ModelRoute(
            deployments=[Deployment(name="spare", backend="openai", url=fallback.url, model_id="s")]
        )
    settings = Settings(models=models, resilience=ResilienceSettings(**{**FAST, **resilience}))
    metrics = Metrics()
    built = build_routers(settings, None, metrics)
    _made.append(built)
    return built, metrics


async def test_429_with_retry_after_is_waited_out_then_answered(upstreams):
    (one,) = upstreams[:1]
    router = routers([one])[0]["coder"]
    one.script(("retry_after", 1))
    log = RouteLog()
    started = time.monotonic()
    generation = await router.traced(log).generate(PROMPT, PARAMS)
    assert time.monotonic() - started >= 1.0
    assert generation.choices[0].text.startswith("Sure:")
    assert [a.outcome for a in log.attempts] == ["rate_limited", "ok"]
    assert one.seen[1].at - one.seen[0].at >= 1.0


async def test_a_long_retry_after_fails_over_instead_of_waiting(upstreams):
    router = routers(upstreams, max_retry_after=5)[0]["coder"]
    upstreams[0].script(("retry_after", 60))
    upstreams[1].script(("retry_after", 60))
    log = RouteLog()
    started = time.monotonic()
    with pytest.raises(UpstreamError) as caught:
        await router.generate(PROMPT, PARAMS, log)
    assert time.monotonic() - started < 5
    assert caught.value.upstream_status == 429 and caught.value.retry_after == 60
    assert [a.outcome for a in log.attempts] == ["rate_limited", "rate_limited"]


async def test_500_twice_then_200_is_retried_with_backoff(upstreams):
    (one,) = upstreams[:1]
    router, metrics = routers([one])
    one.script(("status", 500), ("status", 500))
    log = RouteLog()
    generation = await router["coder"].generate(PROMPT, PARAMS, log)
    assert generation.prompt_tokens == len(
        ["write", "a", "function", "that", "adds", "two", "numbers"]
    )
    assert [a.outcome for a in log.attempts] == ["upstream_error", "upstream_error", "ok"]
    assert len(one.seen) == 3
    waits = [b.at - a.at for a, b in zip(one.seen, one.seen[1:], strict=False)]
    assert all(w > 0 for w in waits)
    value = metrics.registry.get_sample_value(
        "codey_upstream_attempts_total",
        {"model": "coder", "deployment": "up0", "outcome": "upstream_error"},
    )
    assert value == 2


async def test_400_is_the_callers_and_is_not_retried(upstreams):
    (one,) = upstreams[:1]
    router = routers([one])[0]["coder"]
    one.script(("status", 400))
    with pytest.raises(Exception) as caught:
        await router.generate(PROMPT, PARAMS)
    assert caught.value.status == 400  # type: ignore[attr-defined]
    assert len(one.seen) == 1


async def test_a_hang_past_the_first_token_timeout_moves_to_the_other_deployment(upstreams):
    router = routers(upstreams, first_token_timeout=0.5)[0]["coder"]
    upstreams[0].script(("hang", 5))
    log = RouteLog()
    started = time.monotonic()
    text = await _collect(router, log)
    assert 0.5 <= time.monotonic() - started < 4
    assert text.startswith("Sure:")
    assert [(a.deployment, a.outcome) for a in log.attempts] == [("up0", "timeout"), ("up1", "ok")]


async def test_a_deployment_that_always_hangs_ends_in_a_timeout(upstreams):
    (one,) = upstreams[:1]
    router = routers([one], first_token_timeout=0.3, max_attempts=2)[0]["coder"]
    one.script(("hang", 5), ("hang", 5))
    log = RouteLog()
    with pytest.raises(UpstreamTimeout) as caught:
        await _collect(router, log)
    assert caught.value.status == 504
    assert [a.outcome for a in log.attempts] == ["timeout", "timeout"]


async def test_a_stream_cut_after_its_first_token_is_not_retried(upstreams):
    (one,) = upstreams[:1]
    router = routers([one])[0]["coder"]
    one.script(("drop", 2))
    log = RouteLog()
    received: list[str] = []
    with pytest.raises(UpstreamError):
        async for delta in router.traced(log).stream(PROMPT, PARAMS):
            received.append(delta.text)
    assert "".join(received).startswith("Sure:")
    assert len(one.seen) == 1
    assert [a.outcome for a in log.attempts] == ["unreachable"]


async def test_a_connection_dropped_before_any_answer_is_retried(upstreams):
    (one,) = upstreams[:1]
    router = routers([one])[0]["coder"]
    one.script(("drop", 0))
    generation = await router.generate(PROMPT, PARAMS)
    assert generation.choices[0].text and len(one.seen) == 2


async def test_the_breaker_opens_then_a_trial_call_closes_it(upstreams):
    (one,) = upstreams[:1]
    routed, metrics = routers([one], max_attempts=1, breaker_failures=2)
    router = routed["coder"]
    one.script(("status", 503), ("status", 503))
    for _ in range(2):
        with pytest.raises(UpstreamError):
            await router.generate(PROMPT, PARAMS)
    assert metrics.registry.get_sample_value("codey_upstream_breaker_open", {"deployment": "up0"})
    with pytest.raises(NoDeployment) as caught:
        await router.generate(PROMPT, PARAMS)
    assert caught.value.retry_after >= 1 and len(one.seen) == 2
    await asyncio.sleep(0.6)
    await router.generate(PROMPT, PARAMS)
    assert router.members[0].breaker.state == "closed"
    assert not metrics.registry.get_sample_value(
        "codey_upstream_breaker_open", {"deployment": "up0"}
    )


async def test_load_goes_to_the_deployment_with_fewest_in_flight(upstreams):
    router = routers(upstreams)[0]["coder"]
    upstreams[0].script(*[("hang", 0.3)] * 20)

    async def client() -> None:
        for _ in range(5):
            await router.generate(PROMPT, PARAMS)

    await asyncio.gather(*(client() for _ in range(4)))
    slow, fast = len(upstreams[0].seen), len(upstreams[1].seen)
    assert slow + fast == 20 and slow < fast / 2
    # Under light, one-at-a-time load the two take turns.
    for upstream in upstreams:
        upstream.seen.clear()
        upstream.faults.clear()
    for _ in range(6):
        await router.generate(PROMPT, PARAMS)
    assert len(upstreams[0].seen) == len(upstreams[1].seen) == 3


async def test_the_fallback_model_answers_when_every_deployment_fails(upstreams):
    primary, spare = upstreams
    router = routers([primary], fallback=spare, max_attempts=2)[0]["coder"]
    primary.script(("status", 502), ("status", 502))
    log = RouteLog()
    generation = await router.generate(PROMPT, PARAMS, log)
    assert generation.choices[0].text
    assert [(a.deployment, a.outcome) for a in log.attempts] == [
        ("up0", "upstream_error"),
        ("up0", "upstream_error"),
        ("spare", "ok"),
    ]
    assert spare.seen[0].body["model"] == "s"


async def _collect(router, log: RouteLog | None = None) -> str:
    return "".join([d.text async for d in router.stream(PROMPT, PARAMS, log)])


async def test_tokens_are_counted_by_a_deployment_that_answers(upstreams):
    router = routers(upstreams)[0]["coder"]
    upstreams[0].close()  # the first choice is down: the other one counts
    assert await router.count_tokens(PROMPT) >= len(PROMPT.messages[0].content)
    assert upstreams[1].seen[-1].path == "/tokenize"
