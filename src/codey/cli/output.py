"""Console helpers shared by the commands: JSON output, errors, and progress bars."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from codey.errors import CodeyError

console = Console()
errors = Console(stderr=True)


def to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: to_jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "__fspath__"):
        return str(value)
    return value


def print_json(value: Any) -> None:
    typer.echo(json.dumps(to_jsonable(value), indent=2, ensure_ascii=False))


def fail(error: CodeyError, as_json: bool = False) -> typer.Exit:
    """Report an error the way the user asked for output, and give the exit to raise."""
    if as_json:
        print_json(
            {"error": {"type": type(error).__name__, "message": error.message, "hint": error.hint}}
        )
    else:
        errors.print(f"[bold red]error:[/] {error.message}", highlight=False)
        if error.hint:
            errors.print(f"[yellow]fix:[/] {error.hint}", highlight=False)
    return typer.Exit(code=1)


class ByteProgress:
    """A progress bar on stderr that appears only once there is work to show."""

    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}

    def __call__(self, stage: str, advance: int, total: int) -> None:
        if self._progress is None:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=errors,
                transient=False,
            )
            self._progress.start()
        if stage not in self._tasks:
            self._tasks[stage] = self._progress.add_task(stage, total=total)
        self._progress.advance(self._tasks[stage], advance)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()


@contextmanager
def byte_progress() -> Iterator[ByteProgress]:
    bar = ByteProgress()
    try:
        yield bar
    finally:
        bar.stop()
