"""`codey eval humaneval` (pass@1 of generation, infilling with and without post-processing)
and `codey eval realcode` (infilling real library code)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from codey.cli.output import console, errors, print_json
from codey.cli.runner import run_job
from codey.evaluation import humaneval, realcode
from codey.runtime import Runtime

app = typer.Typer(help="Measure the quality of the code.", no_args_is_help=True)

PUBLISHED = {"qwen2.5-coder-0.5b-instruct": 0.616}
"""HumanEval pass@1 published in the Qwen2.5-Coder technical report."""


@app.command("humaneval")
def humaneval_command(
    ctx: typer.Context,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N problems.")] = None,
    jobs: Annotated[int, typer.Option(min=1, max=32, help="Sandboxed test runs at once.")] = 2,
    output: Annotated[Path, typer.Option(help="Folder for the summary and per-case files.")] = Path(
        "artifacts/humaneval"
    ),
    generation: Annotated[bool, typer.Option(help="Run the generation evaluation.")] = True,
    infill: Annotated[bool, typer.Option(help="Run the infilling evaluation.")] = True,
    max_tokens: Annotated[int, typer.Option(min=16, help="Generation budget per problem.")] = 512,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """HumanEval's problems through the generation service (pass@1), and every line of every
    canonical solution masked and filled in by the completion service."""
    problems = humaneval.load(limit)
    output.mkdir(parents=True, exist_ok=True)

    async def job(runtime: Runtime) -> dict[str, object]:
        with _progress() as progress:
            generation_cases: list[humaneval.GenerationCase] = []
            if generation:
                task = progress.add_task("generation", total=len(problems))
                with _records(output / "generation.jsonl") as record:
                    generation_cases = await humaneval.generation_cases(
                        runtime,
                        problems,
                        jobs,
                        lambda n: progress.advance(task, n),
                        max_tokens,
                        record,
                    )
            infill_cases: list[humaneval.InfillCase] = []
            if infill:
                task = progress.add_task("infilling", total=humaneval.count_masked(problems))
                with _records(output / "infill.jsonl") as record:
                    infill_cases = await humaneval.infill_cases(
                        runtime, problems, jobs, lambda n: progress.advance(task, n), 48, record
                    )
        result = humaneval.summary(generation_cases, infill_cases)
        result["model"] = runtime.generation.backend.model_id
        result["published_pass@1"] = PUBLISHED.get(runtime.generation.backend.model_id)
        (output / "summary.json").write_text(json.dumps(result, indent=2))
        return result

    result = run_job(ctx, as_json, job)
    if as_json:
        print_json(result)
        return
    table = Table("measure", "value", title=f"HumanEval, {result['problems']} problems")
    for key, value in result.items():
        table.add_row(key, f"{value:.1%}" if isinstance(value, float) else str(value))
    console.print(table)
    console.print(f"[dim]per-case results in {output}/[/]")


@app.command("realcode")
def realcode_command(
    ctx: typer.Context,
    split: Annotated[
        str, typer.Option(help="dev, held_out or all: which packages' cases to run.")
    ] = "all",
    kinds: Annotated[
        str, typer.Option(help="Comma-separated: line, block, cross_file.")
    ] = "line,block,cross_file",
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N cases.")] = None,
    seed: Annotated[int, typer.Option(help="The case set's seed.")] = realcode.SEED,
    output: Annotated[Path, typer.Option(help="Folder for the summary and per-case files.")] = Path(
        "artifacts/realcode"
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Fill-in-the-middle on real library code (lines, blocks and cross-file calls masked in
    packages codey pins, chosen by a fixed seed) through the completion service: first-line
    exact match and edit similarity of the top suggestion before and after misfits are
    dropped, whether the file still parses, and, for cross-file calls, with and without the
    other file."""
    wanted = set(kinds.split(","))
    chosen = [
        case
        for case in realcode.cases(seed=seed)
        if case.kind in wanted and split in ("all", case.split)
    ][:limit]
    output.mkdir(parents=True, exist_ok=True)

    async def job(runtime: Runtime) -> dict[str, object]:
        with _progress() as progress:
            task = progress.add_task("infilling real code", total=len(chosen))
            with _records(output / "cases.jsonl") as record:
                outcomes = await realcode.evaluate(
                    runtime, chosen, lambda n: progress.advance(task, n), record
                )
        result = {
            "model": runtime.completion.backend.model_id,
            "seed": seed,
            "versions": realcode.versions(),
            "rows": realcode.summary(outcomes),
        }
        (output / "summary.json").write_text(json.dumps(result, indent=2))
        return result

    result = run_job(ctx, as_json, job)
    if as_json:
        print_json(result)
        return
    rows: list[dict[str, Any]] = result["rows"]  # type: ignore[assignment]
    headers = ("kind", "split", "cases", "exact before", "exact after", "without files",
               "similarity", "parses", "p50 s")  # fmt: skip
    table = Table(*headers, title="Real-code infilling, top suggestion")
    for row in rows:
        alone = row.get("exact_without_files")
        table.add_row(
            row["kind"], row["split"], str(row["cases"]), f"{row['exact_before']:.1%}",
            f"{row['exact_after']:.1%}", "" if alone is None else f"{alone:.1%}",
            f"{row['similarity_after']:.3f}", f"{row['parses_after']:.1%}",
            f"{row['p50_seconds']:.2f}",
        )  # fmt: skip
    console.print(table)
    console.print(f"[dim]per-case results in {output}/[/]")


def _progress() -> Progress:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn())  # fmt: skip
    return Progress(*columns, console=errors)


@contextmanager
def _records(path: Path) -> Iterator[Callable[[Any], None]]:
    """A JSON-lines file that gets each case as soon as it is known."""
    with path.open("w") as f:

        def write(case: Any) -> None:
            f.write(json.dumps(asdict(case)) + "\n")
            f.flush()

        yield write
