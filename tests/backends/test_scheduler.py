from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest

from codey.backends.scheduler import Scheduler


@pytest.fixture
def scheduler():  # type: ignore[no-untyped-def]
    s = Scheduler()
    yield s
    s.close()


async def test_jobs_run_one_at_a_time_in_order(scheduler: Scheduler) -> None:
    running = 0
    peak = 0
    order: list[int] = []
    lock = threading.Lock()

    def job(n: int) -> Callable[[threading.Event], int]:
        def run(cancel: threading.Event) -> int:
            nonlocal running, peak
            with lock:
                running += 1
                peak = max(peak, running)
            time.sleep(0.01)
            order.append(n)
            with lock:
                running -= 1
            return n * n

        return run

    results = await asyncio.gather(*(scheduler.call(job(n)) for n in range(10)))
    assert results == [n * n for n in range(10)]
    assert peak == 1
    assert order == list(range(10))
    assert scheduler.depth == 0


async def test_an_exception_reaches_the_caller_and_the_worker_goes_on(
    scheduler: Scheduler,
) -> None:
    def boom(cancel: threading.Event) -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await scheduler.call(boom)
    assert await scheduler.call(lambda cancel: 42) == 42


async def test_depth_counts_queued_and_running_jobs(scheduler: Scheduler) -> None:
    release = threading.Event()
    first = scheduler.submit(lambda cancel: release.wait(5))
    second = scheduler.submit(lambda cancel: None)
    assert scheduler.depth == 2
    release.set()
    first.future.result(5)
    second.future.result(5)
    assert scheduler.depth == 0


async def test_leaving_a_stream_early_cancels_the_job(scheduler: Scheduler) -> None:
    stopped_after: list[int] = []

    def run(cancel: threading.Event, emit: Callable[[int], None]) -> None:
        for i in range(1000):
            if cancel.is_set():
                stopped_after.append(i)
                return
            emit(i)
            time.sleep(0.002)

    received = []
    async for item in scheduler.stream(run):
        received.append(item)
        if item == 3:
            break
    await scheduler.call(lambda cancel: None)  # the worker is free again
    assert received == [0, 1, 2, 3]
    assert stopped_after and stopped_after[0] < 10


async def test_a_cancelled_caller_cancels_its_job(scheduler: Scheduler) -> None:
    saw_cancel = threading.Event()

    def run(cancel: threading.Event) -> None:
        for _ in range(500):
            if cancel.is_set():
                saw_cancel.set()
                return
            time.sleep(0.002)

    task = asyncio.create_task(scheduler.call(run))
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(saw_cancel.wait, 2)
