"""`codey serve`: the HTTP API, with the model loaded and verified before it listens."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

import typer

from codey.cli.output import byte_progress, console, fail
from codey.config import Settings, load_settings
from codey.errors import CodeyError, ConfigError
from codey.runtime import Runtime


def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(min=0, max=65535, help="Port (default 8000).")] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="TOML settings file.")
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the native, OpenAI-compatible and Vertex AI Codey APIs over HTTP."""
    try:
        settings: Settings = load_settings(config) if config else ctx.obj
    except CodeyError as exc:
        raise fail(exc) from exc
    host = host or settings.server.host
    port = settings.server.port if port is None else port
    if not settings.auth.keys and not _is_loopback(host):
        raise fail(
            ConfigError(
                f"Refusing to serve on {host} without API keys: anyone could use the model.",
                hint="Add keys under [auth] (see `codey keys new`), or bind to 127.0.0.1.",
            )
        )
    try:
        with byte_progress() as progress:
            runtime = Runtime.start(settings, progress)
    except CodeyError as exc:
        raise fail(exc) from exc
    console.print(
        f"[green]codey[/] serving {', '.join(runtime.routers)} on http://{host}:{port} "
        f"(docs at /docs)",
        highlight=False,
    )
    # The web stack loads here, not with the CLI: other commands would pay half a second for it.
    import uvicorn

    from codey.api.app import create_app

    app = create_app(settings, runtime)
    try:
        # Shutdown waits for in-flight requests before the runtime closes.
        uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=60)
    finally:
        runtime.database.close()
        for engine in runtime.engines.values():
            engine.engine.close()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
