"""The circuit breaker on a clock the test moves."""

from __future__ import annotations

from codey.gateway.breaker import Breaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_it_opens_after_failures_in_a_row_and_one_trial_closes_it() -> None:
    clock = Clock()
    breaker = Breaker(failures=3, reset_seconds=10, clock=clock)
    for _ in range(2):
        assert breaker.acquire()
        breaker.failure()
    breaker.success()  # a success in between starts the count again
    for _ in range(3):
        assert breaker.acquire()
        breaker.failure()
    assert breaker.state == "open" and not breaker.acquire()
    assert breaker.ready_in() == 10
    clock.now += 10
    assert breaker.acquire() and breaker.state == "half_open"
    assert not breaker.acquire()  # one trial at a time
    breaker.success()
    assert breaker.state == "closed" and breaker.acquire()


def test_a_failed_trial_opens_it_again_and_a_cancelled_one_lets_the_next_try() -> None:
    clock = Clock()
    breaker = Breaker(failures=1, reset_seconds=5, clock=clock)
    breaker.acquire()
    breaker.failure()
    clock.now += 5
    assert breaker.acquire()
    breaker.failure()
    assert breaker.state == "open" and breaker.ready_in() == 5
    clock.now += 5
    assert breaker.acquire()
    breaker.release()
    assert breaker.acquire() and breaker.state == "half_open"


def test_retry_after_cools_it_without_opening_it() -> None:
    clock = Clock()
    breaker = Breaker(failures=3, reset_seconds=10, clock=clock)
    breaker.cool(2.5)
    assert breaker.state == "closed" and breaker.ready_in() == 2.5 and not breaker.acquire()
    clock.now += 2.5
    assert breaker.acquire()
