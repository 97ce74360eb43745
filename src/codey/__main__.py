"""`python -m codey` runs the CLI."""

from codey.cli.main import app

app()
