"""Tokens/s of the services against the bare llama-cpp-python engine, same model, same run.

    .venv/bin/python bench/engine_vs_service.py [--max-tokens 128] [--repeat 2] [--json out.json]

The bare engine is a `Llama` loaded in this process with codey's engine settings; codey runs in
its engine process, so the figures include the process boundary. Both KV caches are reset before
every call so that each one pays for its full prompt. The bare engine runs
`create_chat_completion` / `create_completion` at temperature 0; codey runs the generation and
completion services, with their prompt building, token scoring, code extraction and
post-processing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from codey.backends.fim import FIM_TEMPLATES
from codey.benchmark.runner import bare_llama
from codey.config import load_settings
from codey.provision.catalogue import DEFAULT
from codey.runtime import Runtime
from codey.services.completion import CompletionRequest
from codey.services.generation import GenerationRequest, build_messages

PROMPTS = [
    "Create a REST API endpoint for user authentication",
    "Implement a binary search tree in Python",
    "Write a function to parse JSON data",
    "Create a database connection pool",
    "Implement rate limiting middleware",
]
COMPLETION_PREFIX = Path(__file__).with_name("fixtures").joinpath("completion_prefix.py")


def bare_chat(llm: Any, prompt: str, max_tokens: int) -> tuple[int, float]:
    llm.reset()
    messages = [
        {"role": m.role, "content": m.content} for m in build_messages(GenerationRequest(prompt))
    ]
    started = time.perf_counter()
    out = llm.create_chat_completion(messages, max_tokens=max_tokens, temperature=0)
    return out["usage"]["completion_tokens"], time.perf_counter() - started


async def codey_generate(runtime: Runtime, prompt: str, max_tokens: int) -> tuple[int, float]:
    await runtime.embedded.engine.reset()  # type: ignore[union-attr]
    started = time.perf_counter()
    result = await runtime.generation.generate(
        GenerationRequest(prompt, max_tokens=max_tokens, temperature=0)
    )
    return result.completion_tokens, time.perf_counter() - started


def bare_fim(llm: Any, prefix: str, max_tokens: int) -> tuple[int, float]:
    llm.reset()
    prompt = FIM_TEMPLATES["qwen"].render(prefix, "")
    tokens = llm.tokenize(prompt.encode(), add_bos=False, special=True)
    started = time.perf_counter()
    out = llm.create_completion(tokens, max_tokens=max_tokens, temperature=0)
    return out["usage"]["completion_tokens"], time.perf_counter() - started


async def codey_complete(runtime: Runtime, prefix: str, max_tokens: int) -> tuple[int, float]:
    await runtime.embedded.engine.reset()  # type: ignore[union-attr]
    started = time.perf_counter()
    result = await runtime.completion.complete(
        CompletionRequest(prefix, "", max_completions=1, max_tokens=max_tokens)
    )
    return result.completion_tokens, time.perf_counter() - started


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    settings = load_settings(model={"available": [DEFAULT.name]})  # one model for all three
    runtime = Runtime.start(settings)
    llm = bare_llama(runtime.embedded.engine.spec)  # type: ignore[union-attr]
    prefix = COMPLETION_PREFIX.read_text()
    cases = [("generate", p, bare_chat, codey_generate) for p in PROMPTS]
    cases += [(f"complete {n} chars", prefix[:n], bare_fim, codey_complete) for n in (250, 1000)]

    bare_chat(llm, PROMPTS[0], 16)  # warm up caches and threads before measuring
    await codey_generate(runtime, PROMPTS[0], 16)
    rows = []
    for service, prompt, bare, ours in cases:
        bare_runs, codey_runs = [], []
        for _ in range(args.repeat):  # alternate, so drift hits both sides alike
            bare_runs.append(bare(llm, prompt, args.max_tokens))
            codey_runs.append(await ours(runtime, prompt, args.max_tokens))
        bare_tps = statistics.median(n / s for n, s in bare_runs)
        codey_tps = statistics.median(n / s for n, s in codey_runs)
        rows.append(
            {
                "service": service,
                "prompt": prompt[:40].replace("\n", " "),
                "bare_tokens": bare_runs[0][0],
                "codey_tokens": codey_runs[0][0],
                "bare_tokens_per_s": round(bare_tps, 1),
                "codey_tokens_per_s": round(codey_tps, 1),
                "ratio": round(codey_tps / bare_tps, 3),
            }
        )
    await runtime.close()

    table = Table("service", "prompt", "tokens bare/codey", "bare tok/s", "codey tok/s", "ratio")
    for r in rows:
        table.add_row(
            r["service"],
            r["prompt"],
            f"{r['bare_tokens']}/{r['codey_tokens']}",
            str(r["bare_tokens_per_s"]),
            str(r["codey_tokens_per_s"]),
            f"{r['ratio']:.3f}",
        )
    overall = statistics.median(r["ratio"] for r in rows)
    console = Console(width=120)
    console.print(table)
    console.print(f"median ratio codey/bare: {overall:.3f}")
    if args.json:
        machine = {"cpu_count": __import__("os").cpu_count(), "platform": platform.platform()}
        args.json.write_text(json.dumps({"machine": machine, "rows": rows, "median": overall}))


if __name__ == "__main__":
    asyncio.run(main())
