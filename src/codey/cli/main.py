"""`codey`: the entry point and its global options."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from codey.cli import batch, bench, doctor, evaluate, jobs, keys, model, serve, usage
from codey.cli.output import fail
from codey.config import default_config_file, load_settings
from codey.errors import CodeyError

app = typer.Typer(
    name="codey",
    help="Code generation, code chat and code completion from a local code model.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(model.app, name="model")
app.add_typer(keys.app, name="keys")
app.add_typer(evaluate.app, name="eval")
app.add_typer(batch.app, name="batch")
app.command("generate")(jobs.generate)
app.command("chat")(jobs.chat)
app.command("complete")(jobs.complete)
app.command("serve")(serve.serve)
app.command("usage")(usage.usage)
app.command("bench")(bench.bench)
app.command("doctor")(doctor.doctor)


@app.callback()
def main(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            envvar="CODEY_CONFIG",
            help="TOML settings file; unset: codey's own, if `codey model use` wrote one.",
        ),
    ] = None,
) -> None:
    """Code generation, code chat and code completion from a local code model."""
    if config is None and default_config_file().is_file():
        config = default_config_file()
    try:
        ctx.obj = load_settings(config)
    except CodeyError as exc:
        raise fail(exc) from exc
