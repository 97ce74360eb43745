"""The engine process, seen from the server: start it, talk to it, watch it, restart it.

Like vLLM's engine core and Ollama's runner, the model runs in a child process, so that a native
crash there (SIGSEGV, SIGABRT, the OOM killer) costs the requests it had in hand and nothing
else. Those requests fail with EngineCrashed (503 and Retry-After); the child comes back by
itself with exponential backoff; after `restart_limit` deaths within `restart_window` seconds it
is given up on, and `reason` says why until the server restarts.

One reader thread per child hands each message to the caller that waits for it, on whatever
event loop (or thread) that caller runs; sends are atomic, so any thread may submit.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from codey.backends.base import Choice, Delta, SamplingParams
from codey.backends.engine_wire import Channel
from codey.config import ModelSettings
from codey.errors import BackendError, EngineCrashed, EngineUnavailable, Overloaded

log = logging.getLogger("codey.engine")

State = Literal["starting", "ready", "restarting", "failed", "stopped"]
Sink = Callable[[tuple[Any, ...]], None]


@dataclass(frozen=True)
class EngineSpec:
    """What the child loads, and how."""

    path: str
    context_length: int
    threads: int
    batch_size: int
    slots: int = 1
    shift_tokens: int = 0
    extra_buffers: bool = True
    turn: str | None = None
    """A lock file the engines of one machine take turns on for their steps."""

    @classmethod
    def of(cls, path: Path, settings: ModelSettings) -> EngineSpec:
        """The engine `settings` describe, loading the model at `path`."""
        return cls(
            turn=str(settings.cache_dir / "engine-steps.lock"),
            path=str(path),
            context_length=settings.context_length,
            threads=settings.threads,
            batch_size=settings.batch_size,
            slots=settings.slots,
            shift_tokens=settings.shift_tokens,
            extra_buffers=settings.extra_buffers,
        )


@dataclass(frozen=True)
class RestartPolicy:
    backoff_initial: float = 0.5
    backoff_max: float = 10.0
    restart_limit: int = 5
    """Deaths within `restart_window` seconds after which the engine is given up on."""
    restart_window: float = 60.0
    start_timeout: float = 300.0


class EngineProcess:
    """A supervised engine child; `state` is what /readyz and the dashboard report."""

    def __init__(
        self,
        spec: EngineSpec,
        *,
        max_queued_tokens: int | None = None,
        policy: RestartPolicy | None = None,
    ) -> None:
        self.spec = spec
        self.max_queued_tokens = max_queued_tokens
        """Work (prompt plus answer tokens) sent and not yet answered before new jobs are
        refused with Overloaded."""
        self.policy = policy or RestartPolicy()
        self.state: State = "starting"
        self.reason: str | None = None
        """Why the engine is not ready, in words a user can act on."""
        self.info: dict[str, Any] = {}
        """What the child said when it was ready: pid, buffer types, load time, ..."""
        self.restarts = 0
        self.decode_rate = 0.0
        self.stats: dict[str, Any] = {}
        """The batcher's latest counters: steps, tokens per step, active sequences, KV cells,
        slot hits (engine_worker sends them as it works)."""
        self.on_restart: list[Callable[[], None]] = []
        self._process: subprocess.Popen[bytes] | None = None
        self._channel: Channel | None = None
        self._pending: dict[int, Sink] = {}
        self._work: dict[int, int] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._deaths: deque[float] = deque()
        self._closing = False

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the child and wait until its model is loaded; raise BackendError if it cannot."""
        self._spawn()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def status(self) -> dict[str, Any]:
        """What /readyz and the dashboard say of the engine."""
        return {
            "state": self.state,
            "reason": self.reason,
            "pid": self.pid,
            "restarts": self.restarts,
            "batching": self.stats,
        }

    @property
    def depth(self) -> int:
        """Requests sent to the engine and not yet answered."""
        return len(self._pending)

    @property
    def queued_tokens(self) -> int:
        """Prompt and answer tokens of the requests sent and not yet answered."""
        return sum(self._work.values())

    def close(self) -> None:
        """Stop the child: it sees its socket close, finishes nothing more, and exits."""
        self._closing = True
        channel, process = self._channel, self._process
        if channel is not None:
            channel.close()
        if process is not None:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.state = "stopped"

    def _spawn(self) -> None:
        ours, theirs = socket.socketpair()
        started = time.perf_counter()
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "codey.backends.engine_worker",
                json.dumps(asdict(self.spec)),
                str(theirs.fileno()),
            ],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        channel = Channel(ours)
        ours.settimeout(self.policy.start_timeout)
        hello = channel.recv()
        ours.settimeout(None)
        if hello is None or hello[0] != "ready":
            channel.close()
            if process.poll() is None:
                process.kill()
            code = process.wait()
            said = hello[1] if hello is not None else describe_exit(code)
            raise BackendError(f"The engine process could not load the model: {said}")
        self.info = {**hello[1], "restart_seconds": round(time.perf_counter() - started, 3)}
        with self._lock:
            self._process, self._channel = process, channel
            self.state, self.reason = "ready", None
        threading.Thread(
            target=self._read, args=(process, channel), name="codey-engine-reader", daemon=True
        ).start()

    def _read(self, process: subprocess.Popen[bytes], channel: Channel) -> None:
        """Deliver the child's messages; when it dies, fail what it held and bring it back."""
        while (message := channel.recv()) is not None:
            kind, job_id = message[0], message[1]
            if kind == "stats":
                self.stats = message[2]
                continue
            if kind == "delta":
                sink = self._pending.get(job_id)
            else:
                with self._lock:
                    sink = self._pending.pop(job_id, None)
                    self._work.pop(job_id, None)
                if kind == "done":
                    self.decode_rate = message[3] or self.decode_rate
            if sink is not None:
                sink(message)
        code = process.wait()
        channel.close()
        death = describe_exit(code)
        wait = math.inf if self._closing else self._next_wait()
        with self._lock:
            held, self._pending = self._pending, {}
            self._work = {}
            if self._closing:
                self.state = "stopped"
            else:
                self._down(death, wait)
        if self._closing:
            for sink in held.values():
                sink(("unavailable", 0, "The engine was shut down."))
            return
        log.error(
            "the engine process (pid %s) died: %s; %d requests in flight failed",
            process.pid,
            death,
            len(held),
        )
        for sink in held.values():
            sink(("crashed", 0, death, wait))
        self._restart(death, wait)

    def _next_wait(self) -> float:
        p, now = self.policy, time.monotonic()
        self._deaths.append(now)
        while self._deaths and now - self._deaths[0] > p.restart_window:
            self._deaths.popleft()
        if len(self._deaths) >= p.restart_limit:
            return math.inf
        return min(p.backoff_initial * 2 ** (len(self._deaths) - 1), p.backoff_max)

    def _down(self, death: str, wait: float) -> None:
        """Say why the engine is down, then that it is (readers look at the state first)."""
        if math.isinf(wait):
            p = self.policy
            self.reason = (
                f"The engine process died {len(self._deaths)} times within "
                f"{p.restart_window:g} s (last: {death}); codey stopped restarting it. "
                "Run `codey doctor` to see why, then restart codey."
            )
            self.state = "failed"
        else:
            self.reason = f"The engine process died ({death}); restarting in {wait:.1f} s."
            self.state = "restarting"

    def _restart(self, death: str, wait: float) -> None:
        while True:
            if math.isinf(wait):
                log.error("%s", self.reason)
                return
            log.warning("restarting the engine in %.1f s", wait)
            time.sleep(wait)
            if self._closing:
                return
            try:
                self._spawn()
            except BackendError as exc:
                death = exc.message
                wait = self._next_wait()
                self._down(death, wait)
                continue
            self.restarts += 1
            log.warning("the engine is back (restart %d, pid %s)", self.restarts, self.pid)
            for hook in self.on_restart:
                hook()
            return

    # -- requests ----------------------------------------------------------------------------

    async def run(
        self, tokens: Sequence[int], params: SamplingParams, stop: tuple[str, ...]
    ) -> list[Choice]:
        """All of `params.n` answers; cancelling the await cancels the job in the engine."""
        work = len(tokens) + params.max_tokens * params.n
        choices: list[Choice] = self._result(
            await self._ask(("run", list(tokens), params, stop, False), work)
        )
        return choices

    async def stream(
        self, tokens: Sequence[int], params: SamplingParams, stop: tuple[str, ...]
    ) -> AsyncIterator[Delta]:
        """One answer as the engine makes it; leaving early stops the engine within a token."""
        loop = asyncio.get_running_loop()
        messages: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()

        def deliver(message: tuple[Any, ...]) -> None:
            _call_soon(loop, lambda: messages.put_nowait(message))

        job_id = self._submit(
            ("run", list(tokens), params, stop, True), deliver, len(tokens) + params.max_tokens
        )
        finished = False
        try:
            while True:
                message = await messages.get()
                if message[0] == "delta":
                    yield message[2]
                    continue
                finished = True
                self._result(message)
                return
        finally:
            if not finished:
                self._cancel(job_id)

    async def reset(self) -> None:
        """Empty the engine's KV cache, so that the next prompt is evaluated in full."""
        self._result(await self._ask(("reset",)))

    async def _ask(self, message: tuple[Any, ...], work: int = 0) -> tuple[Any, ...]:
        """Send one job and await its one answer; cancelling the await cancels the job."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[tuple[Any, ...]] = loop.create_future()

        def deliver(reply: tuple[Any, ...]) -> None:
            _call_soon(loop, lambda: _settle(answer, reply))

        job_id = self._submit(message, deliver, work)
        try:
            return await answer
        except asyncio.CancelledError:
            self._cancel(job_id)
            raise

    def _submit(self, message: tuple[Any, ...], sink: Sink, work: int = 0) -> int:
        with self._lock:
            if self.state != "ready" or self._channel is None:
                raise self._unavailable()
            limit, queued = self.max_queued_tokens, self.queued_tokens
            if limit is not None and queued and queued + work > limit:
                raise Overloaded(
                    f"The engine has {queued} tokens of work queued or running "
                    f"({len(self._pending)} requests), its limit is {limit}."
                )
            job_id = next(self._ids)
            self._pending[job_id] = sink
            self._work[job_id] = work
            channel = self._channel
        # If the child is dying, its reader fails this job with the others.
        with contextlib.suppress(OSError):
            channel.send((message[0], job_id, *message[1:]))
        return job_id

    def _cancel(self, job_id: int) -> None:
        with self._lock:
            self._pending.pop(job_id, None)
            self._work.pop(job_id, None)
            channel = self._channel
        if channel is not None:
            with contextlib.suppress(OSError):
                channel.send(("cancel", job_id))

    def _unavailable(self) -> EngineUnavailable:
        if self.state == "failed":
            return EngineUnavailable(
                self.reason or "The engine process has stopped.",
                retry_after=60,
                hint="An operator must act; retry later.",
            )
        back_in = max(1, math.ceil(float(self.info.get("restart_seconds", 2.0))))
        return EngineUnavailable(
            self.reason or f"The engine process is {self.state}.", retry_after=back_in
        )

    def _result(self, message: tuple[Any, ...]) -> Any:
        kind = message[0]
        if kind == "done":
            return message[2]
        if kind == "error":
            raise BackendError(f"The engine failed: {message[2]}")
        if kind == "crashed":
            death, wait = message[2], message[3]
            back_in = 60 if math.isinf(wait) else wait + self.info.get("restart_seconds", 2.0)
            raise EngineCrashed(
                f"The engine process died ({death}) while answering; it is restarting.",
                retry_after=max(1, math.ceil(back_in)),
            )
        raise EngineUnavailable(str(message[2]), retry_after=1)


def describe_exit(code: int) -> str:
    """An exit status in words: 'killed by SIGSEGV', 'exited with status 1'."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (the OOM killer?)" if -code == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    return f"exited with status {code}"


def _settle(answer: asyncio.Future[tuple[Any, ...]], message: tuple[Any, ...]) -> None:
    if not answer.done():
        answer.set_result(message)


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], object]) -> None:
    with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
        loop.call_soon_threadsafe(callback)
