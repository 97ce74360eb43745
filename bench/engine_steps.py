"""codey's engine against llama.cpp's own C++ loop, step for step, on the same GGUF.

    .venv/bin/python bench/engine_steps.py [--batches 1,4,8] [--rounds 3]

`LlamaEngine` (what codey's batcher drives, through llama-cpp-python) decodes B sequences in
lockstep, one `llama_decode` a step carrying a token of each; `llama-batched-bench` from the
same llama.cpp tree, built with the same flags (bench/llama_server.py), does the same in C++
(its text-generation figure, S_TG). Same context size per sequence, one KV pool (`-kvu`), flash
attention, same threads. The two take turns, round after round, because decode speed on a shared
VM drifts between minutes; each round's ratio compares neighbours in time.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from pathlib import Path

import llama_server  # bench/llama_server.py, beside this script
from rich.console import Console
from rich.table import Table

from codey.backends.engine import LlamaEngine, Piece
from codey.config import load_settings
from codey.provision.assemble import locate_model

console = Console()
PROMPT, TOKENS, CONTEXT = 64, 128, 4096


def engine_rate(model: Path, batch: int, threads: int) -> float:
    """Tokens/s of B sequences decoded in lockstep by codey's engine (prompts not timed)."""
    engine = LlamaEngine(
        model, context_length=CONTEXT, threads=threads, batch_size=512, slots=batch
    )
    try:
        engine.decode([Piece(s, 0, list(range(1000 + s, 1000 + s + PROMPT))) for s in range(batch)])
        started = time.perf_counter()
        for step in range(TOKENS):
            engine.decode([Piece(s, PROMPT + step, [1234 + s]) for s in range(batch)])
        return TOKENS * batch / (time.perf_counter() - started)
    finally:
        engine.close()


def cpp_rate(binary: Path, model: Path, batch: int, threads: int) -> float:
    """llama-batched-bench's text-generation tokens/s (S_TG) for the same shape."""
    command = [
        str(binary), "-m", str(model), "-c", str(CONTEXT * batch), "-b", "512", "-ub", "512",
        "-npp", str(PROMPT), "-ntg", str(TOKENS), "-npl", str(batch), "-t", str(threads),
        "-fa", "on", "-kvu",
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    row = next(line for line in out.splitlines() if line.startswith(f"|    {PROMPT} |"))
    return float(row.split("|")[8])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,4,8")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    settings = load_settings()
    model = locate_model(settings.model.path, settings.model.sha256, settings.model.cache_dir).path
    binary = llama_server.build(target="llama-batched-bench")
    threads = settings.model.threads
    table = Table("sequences", "codey engine tok/s", "llama.cpp C++ tok/s", "ratio per round",
                  "median ratio", title=f"lockstep decoding, {threads} threads")  # fmt: skip
    for batch in (int(b) for b in args.batches.split(",")):
        ours, theirs = [], []
        for _ in range(args.rounds):
            ours.append(engine_rate(model, batch, threads))
            theirs.append(cpp_rate(binary, model, batch, threads))
        ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
        table.add_row(
            str(batch),
            " ".join(f"{r:.1f}" for r in ours),
            " ".join(f"{r:.1f}" for r in theirs),
            " ".join(f"{r:.2f}" for r in ratios),
            f"{statistics.median(ratios):.2f}",
        )
    console.print(table)


if __name__ == "__main__":
    main()
