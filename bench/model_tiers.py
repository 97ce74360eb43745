"""The two registry models side by side, on this machine: what each service gets from each.

    .venv/bin/python bench/model_tiers.py [--humaneval-every 8] [--realcode 48] [--json out.json]

Three parts, each in one run:

- steps: what a `llama_decode` step of one sequence costs each model with 1, 2, 3 and 5 tokens,
  and from that the most speculative decoding with the 0.5B drafting k tokens for the 1.5B
  could give, if the 1.5B accepted every draft: (k + 1) 1.5B steps of one token against k
  0.5B steps and one 1.5B step of k + 1 tokens.
- turns: an engine process per model, both decoding at once (one sequence each, with a
  millisecond of Python between steps, as the batcher has), with and without taking turns for
  their steps (`CpuTurn`), against each alone.
- memory: the resident memory of each engine process with codey's defaults (both models, 8
  slots of 8,192 tokens), after a chat on each.
- services: each model behind codey's services, every service on it: HumanEval pass@1
  through generation (every Nth problem, greedy), tokens/s of chats of 128 tokens, and
  completion on the held-out real-code set (first-line exact match of the top suggestion, p50
  of a cold request, and p50 of the same request after one typed character).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import platform
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from codey.backends.base import ChatPrompt, SamplingParams
from codey.backends.engine import LlamaEngine, Piece
from codey.benchmark import concurrency
from codey.config import load_settings
from codey.evaluation import humaneval, realcode
from codey.provision.assemble import model_path
from codey.provision.catalogue import LARGE, SMALL, CatalogueModel
from codey.runtime import Runtime
from codey.services.completion import CompletionRequest

console = Console(width=120)
CACHE = load_settings().model.cache_dir
PROMPT = Path(realcode.__file__).read_text()[:2000]


def _engine(model: CatalogueModel, turn: Path | None = None) -> LlamaEngine:
    path = model_path(CACHE, model)
    return LlamaEngine(path, context_length=4096, threads=2, batch_size=512, turn=turn)


def _step_costs(model: CatalogueModel) -> dict[int, float]:
    """Median milliseconds of a step of 1, 2, 3 and 5 tokens after a 2,000-character prompt."""
    engine = _engine(model)
    prompt = engine.tokenize(PROMPT, special=False)
    engine.decode([Piece(0, 0, prompt)])
    position, costs = len(prompt), {}
    for width in (1, 2, 3, 5):
        times = []
        for _ in range(12):
            started = time.perf_counter()
            engine.decode([Piece(0, position, prompt[:width], width)])
            times.append(time.perf_counter() - started)
            position += width
        costs[width] = round(statistics.median(times) * 1000, 1)
    engine.close()
    return costs


def _steps_alone(model: CatalogueModel, steps: int, turn: str | None, start_at: float) -> float:
    """Seconds for `steps` steps of one token, started at `start_at` (wall clock)."""
    engine = _engine(model, Path(turn) if turn else None)
    prompt = engine.tokenize(PROMPT, special=False)
    engine.decode([Piece(0, 0, prompt)])
    position = len(prompt)
    while time.time() < start_at:
        time.sleep(0.001)
    started = time.perf_counter()
    for _ in range(steps):
        engine.decode([Piece(0, position, prompt[:1])])
        position += 1
        sum(range(20_000))  # about a millisecond of sampling in Python, as the batcher does
    return time.perf_counter() - started


def turns(steps: dict[CatalogueModel, int]) -> dict[str, float]:
    """Wall seconds until both engines are done: each alone (summed), both free, both taking
    turns."""
    spawn = multiprocessing.get_context("spawn")
    result: dict[str, float] = {}
    with ProcessPoolExecutor(2, mp_context=spawn) as pool:
        alone = [pool.submit(_steps_alone, m, n, None, 0).result() for m, n in steps.items()]
        result["alone, one after the other"] = round(sum(alone), 2)
        lock = str(Path(tempfile.mkdtemp()) / "steps.lock")
        for label, turn in (("at once, free", None), ("at once, taking turns", lock)):
            start_at = time.time() + 15  # both loaded and past their prompt by then
            futures = [pool.submit(_steps_alone, m, n, turn, start_at) for m, n in steps.items()]
            result[label] = round(max(f.result() for f in futures), 2)
    return result


async def memory(db: Path) -> dict[str, float]:
    """MB resident in each engine process, after a short chat on each model."""
    runtime = await asyncio.to_thread(Runtime.start, load_settings(store={"sqlite_path": db}))
    try:
        for service in ("generation", "chat"):
            backend = runtime.engine_for(service)  # type: ignore[arg-type]
            assert backend is not None
            prompt = ChatPrompt(concurrency.chat_messages("Write a binary search."))
            await backend.generate(prompt, SamplingParams(max_tokens=16, temperature=0.0))
        return {name: _resident_mb(e.engine.pid) for name, e in runtime.engines.items()}
    finally:
        await runtime.close()


def _resident_mb(pid: int | None) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    kilobytes = next(int(line.split()[1]) for line in status.splitlines() if line[:6] == "VmRSS:")
    return round(kilobytes / 1024, 1)


async def services(model: CatalogueModel, every: int, cases: int, db: Path) -> dict[str, Any]:
    settings = load_settings(model={"available": [model.name]}, store={"sqlite_path": db})
    runtime = await asyncio.to_thread(Runtime.start, settings)
    try:
        return {
            "generation": await _generation(runtime, every),
            "chat": await _chat(runtime),
            "completion": await _completion(runtime, cases),
        }
    finally:
        await runtime.close()


async def _generation(runtime: Runtime, every: int) -> dict[str, Any]:
    problems = humaneval.load()[::every]
    started = time.perf_counter()
    cases = await humaneval.generation_cases(runtime, problems, 2, lambda n: None, 512)
    return {
        "problems": len(cases),
        "pass@1": round(sum(c.passed for c in cases) / len(cases), 4),
        "seconds": round(time.perf_counter() - started, 1),
    }


async def _chat(runtime: Runtime) -> dict[str, Any]:
    backend = runtime.engine_for("chat")
    assert backend is not None
    tokens = seconds = 0.0
    for prompt in concurrency.chat_prompts(3):
        started = time.perf_counter()
        answer = await backend.generate(
            ChatPrompt(concurrency.chat_messages(prompt)),
            SamplingParams(max_tokens=128, temperature=0.0),
        )
        seconds += time.perf_counter() - started
        tokens += answer.completion_tokens
    return {"tokens": int(tokens), "tokens_per_second": round(tokens / seconds, 2)}


async def _completion(runtime: Runtime, count: int) -> dict[str, Any]:
    chosen = [c for c in realcode.cases() if c.split == "held_out" and c.kind in ("line", "block")][
        :count
    ]
    exact, cold, typed = [], [], []
    for index, case in enumerate(chosen):
        session = f"cursor-{index}"
        started = time.perf_counter()
        result = await runtime.completion.complete(
            CompletionRequest(case.prefix, case.suffix, session=session)
        )
        cold.append(time.perf_counter() - started)
        top = result.suggestions[0].completion if result.suggestions else ""
        exact.append(realcode.exact(case, top))
        # one character typed at the cursor: the first of the removed code
        started = time.perf_counter()
        await runtime.completion.complete(
            CompletionRequest(case.prefix + case.middle[:1], case.suffix, session=session)
        )
        typed.append(time.perf_counter() - started)
    return {
        "cases": len(chosen),
        "exact": round(sum(exact) / len(exact), 4),
        "cold_p50_s": round(statistics.median(cold), 2),
        "typed_p50_s": round(statistics.median(typed), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--humaneval-every", type=int, default=8)
    parser.add_argument("--realcode", type=int, default=48, help="Held-out cases to complete.")
    parser.add_argument("--parts", default="steps,turns,memory,services")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    out: dict[str, Any] = {"machine": platform.processor() or platform.machine()}
    models = (SMALL, LARGE)
    if "steps" in parts:
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(1, mp_context=spawn) as pool:
            costs = {m.name: pool.submit(_step_costs, m).result() for m in models}
        out["steps_ms"] = costs
        small, large = costs[SMALL.name], costs[LARGE.name]
        out["draft_bound"] = {
            k: round((k + 1) * large[1] / (k * small[1] + large[k + 1]), 2) for k in (1, 2, 4)
        }
        table = Table("model", "1 token", "2", "3", "5", title="ms per step")
        for name, row in costs.items():
            table.add_row(name, *(f"{row[w]:.1f}" for w in (1, 2, 3, 5)))
        console.print(table)
        console.print(f"speculative decoding, best case (every draft kept): {out['draft_bound']}")
    if "turns" in parts:
        out["turns_s"] = turns({SMALL: 80, LARGE: 50})
        console.print(f"two engines, seconds until both are done: {out['turns_s']}")
    if "memory" in parts:
        with tempfile.TemporaryDirectory() as tmp:
            out["memory_mb"] = asyncio.run(memory(Path(tmp) / "codey.db"))
        console.print(f"engine processes, MB resident: {out['memory_mb']}")
    if "services" in parts:
        out["services"] = {}
        with tempfile.TemporaryDirectory() as tmp:
            for model in models:
                db = Path(tmp) / f"{model.parameters}.db"
                figures = asyncio.run(services(model, args.humaneval_every, args.realcode, db))
                out["services"][model.name] = figures
                console.print(model.name, figures)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
