"""The engine's build options and its process boundary, measured in one run.

    .venv/bin/python bench/engine_process.py [--tokens 128] [--repeat 3] [--restarts 5]

1. Weights repacked for this CPU (extra buffer types on, the AMX-free build's default) against
   `use_extra_bufts = False` (the load-time workaround for a build with AMX): prompt and decode
   tokens/s of `LlamaEngine` (one slot, its batcher) in this process, alternated.
2. The same decode loop across the process boundary (EngineProcess, tokens streamed over the
   socket pair) against in this process: tokens/s and the ratio.
3. Restart to ready: SIGKILL the engine process and time until it answers again, model on disk.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import statistics
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from codey.backends.base import SamplingParams
from codey.backends.batcher import Batcher
from codey.backends.engine import LlamaEngine
from codey.backends.engine_build import inspect
from codey.backends.engine_process import EngineProcess, EngineSpec
from codey.backends.vocabulary import Vocabulary
from codey.config import load_settings
from codey.provision.assemble import locate_model

PROMPT = Path(__file__).with_name("fixtures").joinpath("completion_prefix.py").read_text()[:1500]


def cold(batcher: Batcher) -> None:
    """Empty the KV cache, so the next prompt is read in full."""
    emptied = threading.Event()
    batcher.reset(emptied.set)
    emptied.wait()


def in_process(batcher: Batcher, tokens: list[int], n: int) -> tuple[float, float]:
    """(prompt tokens/s, decode tokens/s) of one cold greedy run."""
    cold(batcher)
    started = time.perf_counter()
    batcher.run(tokens, SamplingParams(max_tokens=1, temperature=0))
    prefilled = time.perf_counter()
    cold(batcher)
    choices = batcher.run(tokens, SamplingParams(max_tokens=n, temperature=0))
    done = time.perf_counter()
    decode_seconds = (done - prefilled) - (prefilled - started)
    return len(tokens) / (prefilled - started), len(choices[0].tokens) / decode_seconds


async def across(process: EngineProcess, tokens: list[int], n: int) -> float:
    """Tokens/s of one cold greedy streamed run through the engine process, prompt included."""
    await process.reset()
    started = time.perf_counter()
    count = 0
    async for delta in process.stream(tokens, SamplingParams(max_tokens=n, temperature=0), ()):
        count += 1 if delta.token is not None else 0
        if delta.finish_reason is not None:
            count = delta.completion_tokens
    return count / (time.perf_counter() - started)


def local(batcher: Batcher, tokens: list[int], n: int) -> float:
    """Tokens/s of the same cold greedy run in this process, prompt included."""
    cold(batcher)
    started = time.perf_counter()
    choices = batcher.run(tokens, SamplingParams(max_tokens=n, temperature=0))
    return len(choices[0].tokens) / (time.perf_counter() - started)


async def restart_seconds(process: EngineProcess, times: int) -> tuple[list[float], list[float]]:
    """Kill to ready (backoff included), and spawn to ready, of each restart."""
    seconds, spawns = [], []
    for _ in range(times):
        pid = process.pid
        before = process.restarts
        started = time.perf_counter()
        os.kill(pid, signal.SIGKILL)  # type: ignore[arg-type]
        while process.restarts == before:
            await asyncio.sleep(0.01)
        seconds.append(time.perf_counter() - started)
        spawns.append(process.info["restart_seconds"])
        process._deaths.clear()  # a benchmark, not a crash loop
    return seconds, spawns


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--restarts", type=int, default=5)
    args = parser.parse_args()
    m = load_settings().model
    path = locate_model(m.path, m.sha256, m.cache_dir).path
    tokens = Vocabulary(path).tokenize(PROMPT, special=False, add_bos=True)
    build = inspect()
    console = Console(width=120)
    console.print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"llama-cpp-python {build.version}, AMX compiled: {build.amx_compiled}, "
        f"{len(tokens)} prompt tokens, {args.tokens} new, {m.threads} threads"
    )

    kwargs = {"context_length": 4096, "threads": m.threads, "batch_size": m.batch_size}
    engines = {
        "repacked (extra buffers on)": LlamaEngine(path, extra_buffers=True, **kwargs),  # type: ignore[arg-type]
        "use_extra_bufts = False": LlamaEngine(path, extra_buffers=False, **kwargs),  # type: ignore[arg-type]
    }
    batchers = {name: Batcher(engine) for name, engine in engines.items()}
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in engines}
    for _ in range(args.repeat):  # alternate, so drift hits both alike
        for name, batcher in batchers.items():
            runs[name].append(in_process(batcher, tokens, args.tokens))
    table = Table("weights", "buffer types", "prompt tok/s", "decode tok/s", "decode ratio")
    base = statistics.median(d for _, d in runs["repacked (extra buffers on)"])
    for name, engine in engines.items():
        prompt = statistics.median(p for p, _ in runs[name])
        decode = statistics.median(d for _, d in runs[name])
        table.add_row(
            name, ", ".join(engine.buffer_types), f"{prompt:.1f}", f"{decode:.1f}",
            f"{decode / base:.3f}",
        )  # fmt: skip
    console.print(table)
    repacked = batchers.pop("repacked (extra buffers on)")
    for batcher in batchers.values():
        batcher.close()

    spec = EngineSpec(str(path), 4096, m.threads, m.batch_size)
    process = EngineProcess(spec)
    process.start()
    inside, outside = [], []
    for _ in range(args.repeat):
        inside.append(local(repacked, tokens, args.tokens))
        outside.append(await across(process, tokens, args.tokens))
    table = Table("path", "tokens/s (prompt included)", "ratio")
    table.add_row("LlamaEngine in this process", f"{statistics.median(inside):.1f}", "1.000")
    ratio = statistics.median(outside) / statistics.median(inside)
    table.add_row("engine process, streamed", f"{statistics.median(outside):.1f}", f"{ratio:.3f}")
    console.print(table)

    seconds, spawns = await restart_seconds(process, args.restarts)
    process.close()
    console.print(
        f"restart to ready after SIGKILL: median {statistics.median(seconds):.2f} s "
        f"(min {min(seconds):.2f}, max {max(seconds):.2f}, {len(seconds)} restarts), of which "
        f"the new process to ready: median {statistics.median(spawns):.2f} s"
    )


if __name__ == "__main__":
    asyncio.run(main())
