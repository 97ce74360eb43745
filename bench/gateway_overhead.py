"""Time the gateway's policies add to a cache miss and a cache hit, in-process, against the
bare service call (same request, same run).

    .venv/bin/python bench/gateway_overhead.py [--repeat 200] [--redis redis://127.0.0.1:6379/0]

Miss: key, cache lookup, daily quota (SQLite transaction, or a Redis script), per-minute
window, the service call, counters, ledger row (SQLite), cache fill. Hit: key, lookup, ledger
row. The service call is a one-token completion, the cheapest real engine call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from codey.api.native.protocol import CompleteBody
from codey.config import load_settings
from codey.gateway.auth import Principal
from codey.gateway.pipeline import Call
from codey.runtime import Runtime
from codey.services.completion import CompletionRequest

REQUEST = CompletionRequest("def add(a, b):\n    return ", "\n", max_completions=1, max_tokens=1)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--redis", default=None, help="Shared mode: counters and cache in Redis.")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    store = Path(tempfile.mkdtemp()) / "bench.db"
    settings = load_settings(
        store={"sqlite_path": store},
        redis_url=args.redis,
        limits={"completion": {"requests_per_day": None, "requests_per_minute": 10**9}},
    )
    runtime = Runtime.start(settings)
    gateway = runtime.gateway
    who = Principal("bench")
    model = settings.model_for("completion")
    body = CompleteBody(
        prefix=REQUEST.prefix, suffix=REQUEST.suffix, max_completions=1, max_tokens=1
    )

    def call(**kw: bool) -> Call:
        return Call(who, body, model, **kw)

    await runtime.completion.complete(REQUEST)  # warm the engine and its KV cache
    bare, miss, hit = [], [], []
    await gateway.serve(call())  # fill the cache for the hits
    for _ in range(args.repeat):
        started = time.perf_counter()
        await runtime.completion.complete(REQUEST)
        bare.append(time.perf_counter() - started)
        started = time.perf_counter()
        await gateway.serve(call(no_cache=True, no_store=True))
        miss.append(time.perf_counter() - started)
        started = time.perf_counter()
        await gateway.serve(call())
        hit.append(time.perf_counter() - started)
    await runtime.close()

    b, m, h = (statistics.median(x) * 1000 for x in (bare, miss, hit))
    rows = [
        {"path": "bare service call", "p50_ms": round(b, 3), "added_ms": 0.0, "ratio": 1.0},
        {
            "path": "gateway, cache miss",
            "p50_ms": round(m, 3),
            "added_ms": round(m - b, 3),
            "ratio": round(m / b, 3),
        },
        {
            "path": "gateway, cache hit",
            "p50_ms": round(h, 3),
            "added_ms": None,
            "ratio": round(h / b, 3),
        },
    ]
    table = Table(
        "path",
        "p50 ms",
        "added ms",
        "ratio to bare",
        title=f"gateway overhead ({'redis' if args.redis else 'sqlite'})",
    )
    for r in rows:
        added = "" if r["added_ms"] is None else f"{r['added_ms']:.3f}"
        table.add_row(r["path"], f"{r['p50_ms']:.3f}", added, f"{r['ratio']:.3f}")
    Console(width=100).print(table)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
