"""The batch runner: a job's lines through the gateway, behind interactive traffic.

Each line is one gateway call marked `batch` (its own daily quota, batch prices, background
scheduling in the engine), at most `batch.concurrency` of them in flight across all jobs,
oldest job first. A line's result commits with its ledger row, so a job killed half way
resumes where it stood: lines already settled are never run again, the others run once more.

A job moves validating -> in_progress -> finalizing -> completed; cancelling -> cancelled
(lines in flight stop, the settled ones are kept); in_progress past its window -> expired;
in_progress whose key was taken out of the config -> failed.
Each API that makes jobs plugs in a `BatchKind`: how a line becomes a call, and how the
settled lines become the job's output.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Coroutine
from typing import Any, Protocol

from codey.config import BatchSettings
from codey.errors import CodeyError, NotFound
from codey.gateway.auth import Principal
from codey.gateway.job import Answer
from codey.gateway.pipeline import Call, Gateway
from codey.store.batches import BatchJob, BatchStore, Line

log = logging.getLogger("codey.batch")


class BatchKind(Protocol):
    """What an API that makes batch jobs (OpenAI's, Vertex's) tells the runner."""

    def call(self, job: BatchJob, line: Line, principal: Principal) -> Call:
        """The gateway call for a line; raises a CodeyError for a malformed one."""

    async def finish(self, job: BatchJob, store: BatchStore) -> dict[str, Any]:
        """Write the job's output from its settled lines; the job's fields to set."""


def answered(answer: Answer) -> dict[str, Any]:
    return {"body": answer.body}


def refused(message: str) -> dict[str, Any]:
    return {"error": {"message": message}}


class BatchRunner:
    def __init__(
        self,
        gateway: Gateway,
        store: BatchStore,
        settings: BatchSettings,
        kinds: dict[str, BatchKind],
    ) -> None:
        self.gateway = gateway
        self.store = store
        self.settings = settings
        self.kinds = kinds
        self._running: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._not_before: dict[tuple[str, int], float] = {}
        """Lines that failed inside codey, and when they may be tried again."""
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """A job was made or cancelled: look now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Work on every active job until cancelled."""
        while True:
            try:
                for job in await self.store.active():
                    await self._advance(job)
            except Exception:  # one bad pass must not stop batch work for good
                log.exception("the batch runner failed a pass; trying again")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_seconds)

    async def close(self) -> None:
        """Stop the lines in flight; they stay pending for the next start."""
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _advance(self, job: BatchJob) -> None:
        if job.status == "validating":
            await self.store.set_status(job, "in_progress")
        if job.status == "cancelling":
            await self._stop(job)
            await self._finish(job, "cancelled")
        elif job.status == "finalizing":
            await self._finish(job, "completed")
        elif job.status == "in_progress" and time.time() > job.expires_at:
            await self._stop(job)
            await self.store.settle_rest(job.id, 408, refused("The batch expired."))
            await self._finish(job, "expired")
        elif job.status == "in_progress" and not self._owner_known(job):
            message = f"The key {job.owner!r} that made this job is no longer configured."
            await self._stop(job)
            await self.store.settle_rest(job.id, 403, refused(message))
            job.options["errors"] = [{"code": "owner_removed", "message": message}]
            await self._finish(job, "failed", options=job.options)
        elif job.status == "in_progress":
            await self._fill(job)

    async def _fill(self, job: BatchJob) -> None:
        """Start pending lines while there is room; finalize once none is left."""
        mine = {line for batch_id, line in self._running if batch_id == job.id}
        now = time.monotonic()
        later = {
            n for (batch_id, n), t in self._not_before.items() if batch_id == job.id and t > now
        }
        room = self.settings.concurrency - len(self._running)
        if room <= 0:
            return  # lines are running, so this job is not done: its turn comes again
        lines = await self.store.claim(job.id, room, mine | later)
        if not lines and not mine and not later:
            if (await self.store.counts([job.id]))[job.id].pending:
                return  # lines another runner holds: theirs, or free once their lease ends
            await self.store.set_status(job, "finalizing")
            await self._finish(job, "completed")
            return
        for line in lines:
            key = (job.id, line.line)
            self._running[key] = asyncio.create_task(self._run_line(job, line))
            self._running[key].add_done_callback(functools.partial(self._done, key))

    def _done(self, key: tuple[str, int], _: asyncio.Task[None]) -> None:
        self._running.pop(key, None)
        now = time.monotonic()
        self._not_before = {k: t for k, t in self._not_before.items() if t > now}
        self._wake.set()

    async def _stop(self, job: BatchJob) -> None:
        tasks = [t for (batch_id, _), t in self._running.items() if batch_id == job.id]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _finish(self, job: BatchJob, status: str, **fields: Any) -> None:
        if not await self.store.claim_finish(job.id):
            return  # another replica writes this job's output
        fields |= await self.kinds[job.kind].finish(job, self.store)
        await self.store.set_status(job, status, **fields)  # type: ignore[arg-type]

    def _owner_known(self, job: BatchJob) -> bool:
        try:
            self.gateway.keyring.named(job.owner)
        except NotFound:
            return False
        return True

    async def _run_line(self, job: BatchJob, line: Line) -> None:
        try:
            principal = self.gateway.keyring.named(job.owner)
            call = self.kinds[job.kind].call(job, line, principal)
        except CodeyError as exc:  # malformed: this line fails, not the job
            await self.store.settle(line, "failed", exc.status, refused(_said(exc)))
            return
        except Exception:  # a bug here must fail the line, not bring it back again and again
            log.exception("batch %s line %d could not be read", job.id, line.line)
            await self.store.settle(line, "failed", 500, refused("codey failed on this line."))
            return
        settled = False

        def settle(
            status: int, answer: Answer | None, error: str | None
        ) -> Coroutine[Any, Any, None] | None:
            nonlocal settled
            settled = True
            return self._settle(line, status, answer, error)

        try:
            await self.gateway.serve(call, settle)
        except CodeyError:
            pass  # settled with its ledger row
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("batch %s line %d failed unexpectedly", job.id, line.line)
            if not settled:  # tried again later, then failed: never pending for good
                write = self._settle(line, 500, None, "codey failed on this line.")
                if write is not None:
                    await write

    def _settle(
        self, line: Line, status: int, answer: Answer | None, error: str | None
    ) -> Coroutine[Any, Any, None] | None:
        """The line's write, committed with its ledger row."""
        if answer is not None:
            return self.store.settle(line, "done", status, answered(answer))
        if status == 499:
            return None  # stopped by codey (cancel, shutdown): it stays pending
        if status >= 500 and line.attempts + 1 < self.settings.line_attempts:
            # The engine restarting or an upstream down: give it time before the next try.
            wait = min(2.0 ** (line.attempts + 1), 60.0)
            self._not_before[(line.batch_id, line.line)] = time.monotonic() + wait
            return self.store.retry_later(line)
        return self.store.settle(line, "failed", status, refused(error or "failed"))


def _said(exc: CodeyError) -> str:
    return f"{exc.message} {exc.hint}" if exc.hint else exc.message
