"""`codey keys new`: make an API key and the config lines that let it in."""

from __future__ import annotations

from typing import Annotated

import typer

from codey.cli.output import console, print_json
from codey.gateway.auth import new_key

app = typer.Typer(help="API keys.", no_args_is_help=True)


@app.command("new")
def new(
    name: Annotated[str, typer.Argument(help="Who the key is for, as usage reports name it.")],
    admin: Annotated[bool, typer.Option(help="May read every principal's usage.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Print a new key (shown once) and the TOML that adds its SHA-256 to the config."""
    key, digest = new_key()
    snippet = f'[[auth.keys]]\nname = "{name}"\nsha256 = "{digest}"\n'
    if admin:
        snippet += "admin = true\n"
    if as_json:
        print_json({"name": name, "key": key, "sha256": digest, "config": snippet})
        return
    console.print(f"[bold]key[/] (give it to {name}; codey keeps only its hash):\n{key}\n")
    console.print("[bold]add to the config file:[/]")
    console.print(snippet, highlight=False, markup=False)
