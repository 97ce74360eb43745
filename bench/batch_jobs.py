"""Batch jobs on the embedded engine, measured in one run.

    .venv/bin/python bench/batch_jobs.py [--lines 12] [--tokens 64] [--rounds 2] [--json out.json]

1. Throughput: a batch job of `--lines` greedy chats of `--tokens` tokens through OpenAI's
   Batch API (from `batches.create` to `completed`), against the bare engine decoding as many
   sequences as batch work may hold slots (the engine's slots less those kept free for
   interactive requests) in lockstep (benchmark/concurrency.py); the two take turns,
   `--rounds` times, with prompts of their own each round.
2. Interactive latency: p50 of completions in real library code and of short chats, idle and
   while a batch job runs (its lines fill the spare slots and pause while an interactive
   request is in the engine).

codey runs as `codey serve` with its defaults (interactive quotas raised, the response cache
bypassed by the interactive requests).
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

import httpx
from batching import bare_prompts, codey_server, windows  # bench/batching.py, beside this one
from rich.console import Console
from rich.table import Table

from codey.backends.batcher import RESERVED_SLOTS
from codey.backends.engine_build import inspect
from codey.backends.engine_process import EngineSpec
from codey.benchmark.concurrency import bare_batched, chat_body, chat_prompts
from codey.config import load_settings
from codey.provision.assemble import locate_model

console = Console(width=120)
FRESH = {"cache-control": "no-cache, no-store"}


async def batch_job(client: httpx.AsyncClient, prompts: list[str], tokens: int) -> dict[str, Any]:
    """Submit the prompts as one job and wait for it: (tokens/s, tokens, seconds)."""
    lines = [
        {"custom_id": f"c{i}", "method": "POST", "url": "/v1/chat/completions",
         "body": chat_body(p, tokens)}
        for i, p in enumerate(prompts)
    ]  # fmt: skip
    content = "".join(json.dumps(x) + "\n" for x in lines).encode()
    files = {"file": ("bench.jsonl", content, "application/jsonl")}
    uploaded = (await client.post("/v1/files", files=files, data={"purpose": "batch"})).json()
    started = time.perf_counter()
    body = {"input_file_id": uploaded["id"], "endpoint": "/v1/chat/completions"}
    job = (await client.post("/v1/batches", json=body)).json()
    while job["status"] not in ("completed", "failed", "cancelled", "expired"):
        await asyncio.sleep(0.2)
        job = (await client.get(f"/v1/batches/{job['id']}")).json()
    seconds = time.perf_counter() - started
    output = (await client.get(f"/v1/files/{job['output_file_id']}/content")).text
    produced = sum(
        json.loads(line)["response"]["body"]["usage"]["completion_tokens"]
        for line in output.splitlines()
    )
    assert job["request_counts"]["completed"] == len(prompts), job
    return {
        "tokens_per_s": produced / seconds,
        "tokens": produced,
        "seconds": seconds,
        "id": job["id"],
    }


async def interactive(
    client: httpx.AsyncClient, cursors: list[tuple[str, str]]
) -> dict[str, float]:
    """p50 seconds of a completion at each cursor and of a short chat after each."""
    completions, chats = [], []
    for n, (prefix, suffix) in enumerate(cursors):
        body = {"prefix": prefix, "suffix": suffix, "max_completions": 1, "max_tokens": 64}
        started = time.perf_counter()
        (await client.post("/api/v1/codey/complete", json=body, headers=FRESH)).raise_for_status()
        completions.append(time.perf_counter() - started)
        started = time.perf_counter()
        kind = ("list", "dict", "set", "tuple", "deque")[n % 5]
        chat = chat_body(f"In one sentence, what does a Python {kind} hold? (#{n})", 32)
        (await client.post("/v1/chat/completions", json=chat, headers=FRESH)).raise_for_status()
        chats.append(time.perf_counter() - started)
    return {
        "completion_p50_s": statistics.median(completions),
        "chat_p50_s": statistics.median(chats),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = load_settings()
    m = settings.model
    path = locate_model(m.path, m.sha256, m.cache_dir).path
    spec = EngineSpec.of(path, m)
    streams = m.slots - min(RESERVED_SLOTS, m.slots - 1)
    result: dict[str, Any] = {
        "machine": platform.processor() or platform.machine(),
        "engine": inspect().system_info,
        "slots": m.slots,
        "batch_slots": streams,
        "lines": args.lines,
        "tokens": args.tokens,
        "rounds": [],
    }
    offset = 0
    async with (
        codey_server(args.port) as url,
        httpx.AsyncClient(base_url=url, timeout=3600) as client,
    ):
        for r in range(args.rounds):
            bare = await asyncio.to_thread(
                bare_batched, spec, bare_prompts(path, streams), args.tokens
            )
            job = await batch_job(client, chat_prompts(offset + args.lines)[offset:], args.tokens)
            offset += args.lines
            result["rounds"].append(
                {"bare_tokens_per_s": bare, **job, "ratio": job["tokens_per_s"] / bare}
            )
            console.print(
                f"round {r + 1}: bare {bare:.1f} tok/s, batch job {job['tokens_per_s']:.1f} tok/s"
            )
        cursors = windows(2 * args.cursors)
        idle = await interactive(client, cursors[: args.cursors])
        background = asyncio.create_task(
            batch_job(client, chat_prompts(offset + 4 * args.lines)[offset:], 2 * args.tokens)
        )
        await asyncio.sleep(5)  # the job's lines hold their slots
        busy = await interactive(client, cursors[args.cursors :])
        still_running = not background.done()
        background.cancel()
        result["latency"] = {
            "idle": idle,
            "under_batch": busy,
            "batch_still_running": still_running,
        }
    return result


def report(result: dict[str, Any]) -> None:
    table = Table(title=f"batch job against the bare engine at {result['batch_slots']} sequences")
    for column in ("round", "bare tok/s", "batch job tok/s", "tokens", "seconds", "job / bare"):
        table.add_column(column, justify="right")
    for n, row in enumerate(result["rounds"], 1):
        rates = (row["bare_tokens_per_s"], row["tokens_per_s"])
        table.add_row(str(n), *(f"{x:.1f}" for x in rates), str(row["tokens"]),
                      f"{row['seconds']:.1f}", f"{row['ratio']:.2f}")  # fmt: skip
    console.print(table)
    latency = result["latency"]
    table = Table(title="interactive latency, p50 seconds")
    for column in ("request", "idle", "batch job running", "ratio"):
        table.add_column(column, justify="right")
    for key, name in (("completion_p50_s", "completion"), ("chat_p50_s", "chat, 32 tokens")):
        idle, busy = latency["idle"][key], latency["under_batch"][key]
        table.add_row(name, f"{idle:.2f}", f"{busy:.2f}", f"{busy / idle:.2f}")
    console.print(table)
    console.print(f"the batch job was still running at the end: {latency['batch_still_running']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=12)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cursors", type=int, default=5)
    parser.add_argument("--port", type=int, default=8391)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
