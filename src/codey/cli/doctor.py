"""`codey doctor`: check the CPU, the engine build, the model, the engine, the store and Redis."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from codey.cli.output import byte_progress, console, print_json
from codey.config import Settings
from codey.doctor import diagnose, verdict


def doctor(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Load the engine in a child process, decode a few tokens, and say what to fix."""
    settings: Settings = ctx.obj
    with byte_progress() as progress:
        checks = diagnose(settings, progress)
    healthy, fixes = verdict(checks)
    if as_json:
        print_json({"healthy": healthy, "checks": checks, "fixes": fixes})
    else:
        table = Table("check", "", "what was found", show_lines=False)
        for check in checks:
            mark = "[green]ok[/]" if check.ok else "[bold red]FAIL[/]"
            table.add_row(check.name, mark, check.detail)
        console.print(table)
        if healthy:
            console.print("[green]Everything codey needs works on this machine.[/]")
        for fix in fixes:
            console.print(f"[yellow]fix[/] {fix}", highlight=False)
    if not healthy:
        raise typer.Exit(1)
