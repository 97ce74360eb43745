"""Completion at an earlier commit against this tree, on the real-code set, in one run.

    .venv/bin/python bench/completion_then_now.py [--then c1c8298] [--kinds line]
                                                   [--split held_out] [--limit 0]
                                                   [--now-model qwen2.5-coder-0.5b-instruct]

Two codey servers run at once: one from the source of `--then` (extracted with `git archive`
into a temporary folder, run with this environment's packages), one from this tree with
completion on `--now-model`. Each real-code case (`codey eval realcode`'s generator, the same
cases for both) goes to both as the same native `/api/v1/codey/complete` request, prefix and
suffix only, each server's defaults otherwise; the two take turns going first. Reported per
server: first-line exact match of the top suggestion and the p50 and p90 of the time to the
answer, cold (the response cache is bypassed and no two cases share a file window).

The default `--then` is the commit before the work on editors and infilling began; the model
it serves is the only one it had, the 0.5B.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import statistics
import subprocess
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
from batching import NO_CACHE, codey_server  # bench/batching.py, beside this script
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from codey.config import load_settings
from codey.evaluation import realcode
from codey.provision.assemble import model_path
from codey.provision.catalogue import SMALL, find

console = Console(width=120)
REPO = Path(__file__).resolve().parents[1]
THEN = "c1c8298"


def source_at(commit: str) -> Path:
    """The `src` folder of `commit`, extracted into a temporary folder."""
    folder = Path(tempfile.mkdtemp(prefix=f"codey-{commit}-"))
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", commit, "src"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder / "src"


async def complete(client: httpx.AsyncClient, case: realcode.Case) -> tuple[str, float]:
    started = time.perf_counter()
    body = {"prefix": case.prefix, "suffix": case.suffix}
    r = await client.post("/api/v1/codey/complete", json=body)
    seconds = time.perf_counter() - started
    r.raise_for_status()
    suggestions = r.json()["suggestions"]
    return (suggestions[0]["completion"] if suggestions else ""), seconds


async def run(args: argparse.Namespace) -> dict[str, Any]:
    kinds = set(args.kinds.split(","))
    chosen = [c for c in realcode.cases() if c.kind in kinds and c.split == args.split]
    chosen = chosen[: args.limit] if args.limit else chosen
    settings = load_settings()
    small = model_path(settings.model.cache_dir, SMALL)
    now_model = find(args.now_model)
    targets: dict[str, tuple[Path | None, dict[str, str]]] = {
        f"then ({args.then}, {SMALL.name})": (
            source_at(args.then),
            {"CODEY_MODEL__PATH": str(small)},
        ),
        f"now ({now_model.name})": (
            None,
            {"CODEY_MODEL__AVAILABLE": json.dumps([now_model.name])},
        ),
    }
    result: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "cases": len(chosen),
        "kinds": sorted(kinds),
        "split": args.split,
        "servers": {},
    }
    async with AsyncExitStack() as stack:
        clients = {}
        for port, (name, (source, env)) in enumerate(targets.items(), start=args.port):
            console.print(f"starting {name} ...")
            url = await stack.enter_async_context(
                codey_server(port, source=source, seconds=180, **env)
            )
            clients[name] = await stack.enter_async_context(
                httpx.AsyncClient(base_url=url, headers=NO_CACHE, timeout=300)
            )
        rows: dict[str, list[tuple[bool, float]]] = {name: [] for name in clients}
        with Progress(console=console) as progress:
            task = progress.add_task("completing", total=len(chosen))
            for i, case in enumerate(chosen):
                order = list(clients.items())
                for name, client in order if i % 2 == 0 else order[::-1]:
                    text, seconds = await complete(client, case)
                    rows[name].append((realcode.exact(case, text), seconds))
                progress.advance(task)
    for name, outcomes in rows.items():
        times = sorted(s for _, s in outcomes)
        result["servers"][name] = {
            "exact": round(sum(e for e, _ in outcomes) / len(outcomes), 4),
            "p50_s": round(statistics.median(times), 2),
            # nearest rank: the smallest time that at least 90% of the cases took no longer than
            "p90_s": round(times[math.ceil(0.9 * len(times)) - 1], 2),
            "cases": [{"exact": e, "seconds": round(s, 3)} for e, s in outcomes],
        }
    return result


def report(result: dict[str, Any]) -> None:
    table = Table(title=f"{result['cases']} {result['split']} cases ({', '.join(result['kinds'])})")
    for column in ("server", "first-line exact", "p50 s", "p90 s"):
        table.add_column(column, justify="left" if column == "server" else "right")
    for name, row in result["servers"].items():
        table.add_row(name, f"{row['exact']:.2%}", f"{row['p50_s']:.2f}", f"{row['p90_s']:.2f}")
    console.print(table)
    a, b = result["servers"].values()
    exact = f"{b['exact'] / a['exact']:.2f}x" if a["exact"] else "n/a"
    p50 = b["p50_s"] / a["p50_s"]
    console.print(f"now / then: exact {exact}, p50 {p50:.2f}x ({result['machine']})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--then", default=THEN, help="The earlier commit.")
    parser.add_argument("--now-model", default=SMALL.name, help="Completion's model now.")
    parser.add_argument("--kinds", default="line", help="line, block, cross_file (commas).")
    parser.add_argument("--split", default="held_out", choices=("dev", "held_out"))
    parser.add_argument("--limit", type=int, default=0, help="At most this many cases.")
    parser.add_argument("--port", type=int, default=8470)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
