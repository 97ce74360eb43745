"""`codey bench`: latency and throughput per service, each beside the bare engine's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from codey.benchmark import plot, runner, workload
from codey.cli.output import console, errors, print_json
from codey.cli.runner import run_job
from codey.runtime import Runtime


def bench(
    ctx: typer.Context,
    url: Annotated[
        str | None, typer.Option(help="A running codey server; default in-process.")
    ] = None,
    key: Annotated[str | None, typer.Option(help="API key for --url.")] = None,
    requests: Annotated[int, typer.Option(min=1, help="Requests per service.")] = 5,
    concurrency: Annotated[int, typer.Option(min=1, max=256, help="Requests in flight.")] = 1,
    max_tokens: Annotated[int, typer.Option(min=1, help="Tokens per answer.")] = 128,
    output: Annotated[Path, typer.Option(help="Folder for the PNG and the JSON.")] = Path(
        "artifacts/bench"
    ),
    streams: Annotated[
        str | None,
        typer.Option(
            help="Also run this many concurrent chats at once, e.g. 1,4,8: aggregate tokens/s "
            "beside the bare engine batched, plotted against concurrency."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Run the original design's five generation prompts, chat turns and completions at
    several prefix lengths; print min, median, p95 and max latency, requests/s and tokens/s per
    service, each with its ratio to the bare engine on the same prompts in the same run."""
    jobs = workload.jobs(requests, max_tokens)
    levels = [int(n) for n in streams.split(",")] if streams else []
    output.mkdir(parents=True, exist_ok=True)

    async def job(runtime: Runtime) -> dict[str, object]:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns, console=errors) as progress:
            task = progress.add_task("codey" + (f" at {url}" if url else ""), total=len(jobs))
            advance = lambda n: progress.advance(task, n)  # noqa: E731
            if url:
                samples, wall = await runner.over_http(url, key, jobs, concurrency, advance)
            else:
                samples, wall = await runner.in_process(runtime, jobs, concurrency, advance)
            task = progress.add_task("bare engine", total=len(jobs))
            bare = await runner.bare_engine(runtime, jobs, lambda n: progress.advance(task, n))
            sweep = None
            if levels:
                task = progress.add_task("concurrent chats", total=len(levels))
                sweep = await runner.concurrent_chats(
                    runtime, url, key, levels, max_tokens, lambda n: progress.advance(task, n)
                )
        plot.latency_histogram(samples, bare, output / "latency.png")
        result = {
            "target": url or "in-process",
            "requests_per_service": requests,
            "concurrency": concurrency,
            "max_tokens": max_tokens,
            "wall_seconds": round(wall, 2),
            "services": runner.summarise(samples, wall, bare),
        }
        if sweep:
            plot.throughput_by_streams(sweep, output / "throughput.png")
            result["streams"] = sweep
        (output / "bench.json").write_text(json.dumps(result, indent=2))
        return result

    result = run_job(ctx, as_json, job)
    if as_json:
        print_json(result)
        return
    table = Table(
        "service",
        "n",
        "min s",
        "median s",
        "p95 s",
        "max s",
        "req/s",
        "tok/s",
        "bare tok/s",
        "ratio",
        title=f"codey bench ({result['target']})",
    )
    for service, s in result["services"].items():  # type: ignore[attr-defined]
        table.add_row(
            service,
            str(s["requests"]),
            str(s["min_s"]),
            str(s["median_s"]),
            str(s["p95_s"]),
            str(s["max_s"]),
            str(s["requests_per_s"]),
            str(s["tokens_per_s"]),
            str(s["bare_tokens_per_s"]),
            str(s["ratio_to_bare"]),
        )
    console.print(table)
    if levels:
        table = Table("streams", "tok/s", "bare batched tok/s", "ratio", title="concurrent chats")
        for row in result["streams"]:  # type: ignore[attr-defined]
            table.add_row(
                str(row["streams"]),
                str(row["tokens_per_s"]),
                str(row.get("bare_tokens_per_s", "-")),
                str(row.get("ratio_to_bare", "-")),
            )
        console.print(table)
        console.print(f"[dim]{output}/throughput.png[/]")
    console.print(f"[dim]{output}/latency.png and {output}/bench.json[/]")
