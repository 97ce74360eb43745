"""The engine process with the real model: crashes cost only the requests in hand, the engine
comes back by itself, and a crash loop is given up on with a reason."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from contextlib import aclosing
from pathlib import Path

import pytest

from codey.backends.base import SamplingParams
from codey.backends.engine import LlamaEngine
from codey.backends.engine_process import EngineProcess, EngineSpec, RestartPolicy
from codey.backends.llamacpp import LlamaCppBackend
from codey.errors import EngineCrashed, EngineUnavailable

pytestmark = pytest.mark.model

LONG = SamplingParams(max_tokens=300, temperature=0)
QUICK = SamplingParams(max_tokens=4, temperature=0)


@pytest.fixture
def spec(backend: LlamaCppBackend) -> EngineSpec:
    return backend.engine.spec


@pytest.fixture
def engine(spec: EngineSpec) -> Iterator[EngineProcess]:
    engine = EngineProcess(spec, policy=RestartPolicy(backoff_initial=0.1, restart_limit=3))
    engine.start()
    yield engine
    engine.close()


def prompt(backend: LlamaCppBackend, text: str) -> list[int]:
    return backend.vocabulary.tokenize(text, special=False, add_bos=True)


async def wait_for(condition: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_the_engine_runs_in_a_child_and_says_where_the_weights_went(
    backend: LlamaCppBackend,
) -> None:
    info = backend.engine.info
    assert info["pid"] == backend.engine.pid != os.getpid()
    assert info["buffer_types"], info
    assert not any("AMX" in name for name in info["buffer_types"])
    assert info["amx_compiled"] is False
    assert info["context_length"] == backend.context_length == 4096


async def test_a_crash_fails_what_was_in_hand_and_the_engine_comes_back(
    engine: EngineProcess, backend: LlamaCppBackend
) -> None:
    restarted: list[int] = []
    engine.on_restart.append(lambda: restarted.append(engine.restarts))
    first_pid = engine.pid
    tokens = prompt(backend, "# a long story about a dragon\n")
    alone = await engine.run(tokens, QUICK, ())

    async def streamed() -> int:
        seen = 0
        async with aclosing(engine.stream(tokens, LONG, ())) as deltas:
            async for _ in deltas:
                seen += 1
                if seen == 2:
                    os.kill(engine.pid, signal.SIGSEGV)  # type: ignore[arg-type]
        return seen

    waiting = [asyncio.create_task(engine.run(tokens, LONG, ())) for _ in range(3)]
    with pytest.raises(EngineCrashed) as crashed:
        await streamed()
    assert "SIGSEGV" in crashed.value.message
    assert crashed.value.retry_after >= 1
    for task in waiting:  # queued behind the stream in the engine: failed alike
        with pytest.raises(EngineCrashed):
            await task
    with pytest.raises(EngineUnavailable):
        await engine.run(tokens, QUICK, ())  # while it restarts
    await wait_for(lambda: engine.state == "ready")
    assert engine.pid != first_pid
    assert engine.restarts == 1 and restarted == [1]
    assert engine.info["restart_seconds"] > 0
    again = await engine.run(tokens, QUICK, ())
    assert [c.text for c in again] == [c.text for c in alone]
    assert engine.depth == 0


async def test_a_crash_loop_is_given_up_on_with_the_reason(
    engine: EngineProcess, backend: LlamaCppBackend
) -> None:
    tokens = prompt(backend, "x = 1\n")
    for _ in range(3):
        await wait_for(lambda: engine.state in ("ready", "failed"))
        if engine.state == "failed":
            break
        os.kill(engine.pid, signal.SIGABRT)  # type: ignore[arg-type]
        await wait_for(lambda: engine.state != "ready")
    await wait_for(lambda: engine.state == "failed")
    assert engine.reason is not None
    assert "SIGABRT" in engine.reason and "codey doctor" in engine.reason
    with pytest.raises(EngineUnavailable) as refused:
        await engine.run(tokens, QUICK, ())
    assert refused.value.retry_after == 60
    assert engine.reason in refused.value.message


async def test_a_killed_caller_cancels_its_job_across_the_boundary(
    backend: LlamaCppBackend,
) -> None:
    tokens = prompt(backend, "# an essay about sorting algorithms\n")
    task = asyncio.create_task(backend.engine.run(tokens, LONG, ()))
    await asyncio.sleep(0.5)
    task.cancel()
    started = time.perf_counter()
    await backend.engine.run(tokens, QUICK, ())
    assert time.perf_counter() - started < 5  # not the ~8 s that 300 tokens would take
    assert backend.engine.depth == 0


def test_without_extra_buffers_the_weights_are_not_repacked(spec: EngineSpec) -> None:
    kwargs = dict(context_length=512, threads=spec.threads, batch_size=64)
    plain = LlamaEngine(Path(spec.path), extra_buffers=False, **kwargs)  # type: ignore[arg-type]
    assert plain.buffer_types == ["CPU_Mapped"], plain.buffer_types
    plain.close()
