"""The engine process: loads the model, then runs what the server sends, batched.

    python -m codey.backends.engine_worker SPEC_JSON FD

Started by EngineProcess with one end of a socket pair as FD. A native crash here (SIGSEGV in a
matrix multiply, the OOM killer) ends this process only; the server answers for it and starts
another. The process ends when the server closes its end of the socket, which the kernel does
for it however it dies (a parent-death signal would fire when the spawning thread ends).
"""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from codey.backends.base import Delta, SamplingParams
from codey.backends.batcher import Batcher, Request
from codey.backends.engine import LlamaEngine
from codey.backends.engine_build import inspect
from codey.backends.engine_wire import Channel
from codey.errors import CodeyError


def main(argv: list[str]) -> int:
    spec, fd = json.loads(argv[0]), int(argv[1])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle
    channel = Channel(socket.socket(fileno=fd))
    started = time.perf_counter()
    build = inspect(disassemble=False)
    # A build with AMX compiled in crashes in its AMX buffer type (llama.cpp issue 20824):
    # without extra buffer types the weights stay where every CPU can use them.
    extra_buffers = spec["extra_buffers"] and not build.amx_compiled
    try:
        engine = LlamaEngine(
            Path(spec["path"]),
            context_length=spec["context_length"],
            threads=spec["threads"],
            batch_size=spec["batch_size"],
            slots=spec["slots"],
            extra_buffers=extra_buffers,
            shared_pool=spec.get("shift_tokens", 0) > 0,  # moving cells lends them
            turn=Path(spec["turn"]) if spec.get("turn") else None,
        )
    except CodeyError as exc:
        channel.send(("failed", str(exc)))
        return 1
    channel.send(
        (
            "ready",
            {
                "pid": os.getpid(),
                "context_length": engine.context_length,
                "buffer_types": engine.buffer_types,
                "extra_buffers": extra_buffers,
                "threads": engine.threads,
                "slots": engine.slots,
                "load_seconds": round(time.perf_counter() - started, 3),
                "llama_cpp": build.version,
                "amx_compiled": build.amx_compiled,
                "system_info": build.system_info,
            },
        )
    )
    serve(engine, channel, shift=spec.get("shift_tokens", 0))
    return 0


def serve(engine: LlamaEngine, channel: Channel, *, shift: int = 0) -> None:
    """Run jobs until the server closes its end; a cancel reaches a running job within a step."""

    def report(stats: dict[str, Any]) -> None:
        channel.send(("stats", 0, stats))

    batcher = Batcher(engine, shift=shift, on_stats=report)
    while (message := channel.recv()) is not None:
        kind, job_id = message[0], message[1]
        if kind == "run":
            _, _, tokens, params, stop, stream = message
            batcher.submit(_request(channel, job_id, tokens, params, stop, stream))
        elif kind == "cancel":
            batcher.cancel(job_id)
        elif kind == "reset":
            batcher.reset(functools.partial(channel.send, ("done", job_id, [], 0.0)))
    batcher.close()


def _request(
    channel: Channel,
    job_id: int,
    tokens: list[int],
    params: SamplingParams,
    stop: tuple[str, ...],
    stream: bool,
) -> Request:
    def emit(delta: Delta) -> None:
        channel.send(("delta", job_id, delta))

    return Request(
        job_id,
        tokens,
        params,
        stop,
        on_done=lambda choices, rate: channel.send(("done", job_id, choices, rate)),
        on_error=lambda message: channel.send(("error", job_id, message)),
        on_delta=emit if stream else None,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
