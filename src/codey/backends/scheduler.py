"""The single seam in front of the engine: one worker thread runs every job, in order.

Two engines on two cores were seen to halve each other's speed, so one thread owns the model and
everything else queues here. Batched decoding of several sequences can later replace this
serial queue without touching the callers.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from codey.errors import Overloaded

T = TypeVar("T")
E = TypeVar("E")

_DONE = object()


@dataclass
class Job(Generic[T]):
    run: Callable[[threading.Event], T]
    future: Future[T] = field(default_factory=Future)
    cancel: threading.Event = field(default_factory=threading.Event)


class Scheduler:
    """Runs jobs one at a time on a dedicated thread; `depth` counts queued plus running.

    Past `max_depth` a new job is refused with Overloaded instead of piling up.
    """

    def __init__(self, name: str = "codey-engine", max_depth: int | None = None) -> None:
        self.max_depth = max_depth
        self._jobs: queue.SimpleQueue[Job[object] | None] = queue.SimpleQueue()
        self._depth = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        return self._depth

    def submit(self, run: Callable[[threading.Event], T]) -> Job[T]:
        """Queue `run`; it gets an Event that is set when the caller gives up on it."""
        job: Job[T] = Job(run)
        with self._lock:
            if self.max_depth is not None and self._depth >= self.max_depth:
                raise Overloaded(
                    f"The engine has {self._depth} requests queued or running, "
                    f"its limit is {self.max_depth}."
                )
            self._depth += 1
        self._jobs.put(job)  # type: ignore[arg-type]
        return job

    async def call(self, run: Callable[[threading.Event], T]) -> T:
        """Run a job and await its result; cancelling the await cancels the job."""
        job = self.submit(run)
        try:
            return await asyncio.wrap_future(job.future)
        except asyncio.CancelledError:
            job.cancel.set()
            raise

    async def stream(
        self, run: Callable[[threading.Event, Callable[[E], None]], None]
    ) -> AsyncIterator[E]:
        """Run a job that emits items, and yield them as they come.

        Leaving the iteration early (break, aclose, a cancelled task) sets the job's cancel
        event, so the engine stops within a token.
        """
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[object] = asyncio.Queue()

        def emit(item: E) -> None:
            loop.call_soon_threadsafe(items.put_nowait, item)

        def body(cancel: threading.Event) -> None:
            try:
                run(cancel, emit)
            finally:
                loop.call_soon_threadsafe(items.put_nowait, _DONE)

        job = self.submit(body)
        try:
            while (item := await items.get()) is not _DONE:
                yield item  # type: ignore[misc]
            job.future.result()  # re-raise what the job raised
        finally:
            job.cancel.set()

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=30)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            if job.cancel.is_set():
                job.future.cancel()
            if not job.future.set_running_or_notify_cancel():
                self._done()
                continue
            # The depth drops before the caller hears back, so a caller that has its answer
            # never sees its own job still counted.
            try:
                result = job.run(job.cancel)
            except BaseException as exc:  # handed to the waiting caller
                self._done()
                job.future.set_exception(exc)
            else:
                self._done()
                job.future.set_result(result)

    def _done(self) -> None:
        with self._lock:
            self._depth -= 1
