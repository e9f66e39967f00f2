"""The ``bert4rec`` command: thin typer commands over the library, one module per group, tables apart."""

from bert4rec.cli import data, evaluate, quickstart, recommend, serve, train  # noqa: F401  (registers the commands)
from bert4rec.cli.main import app, main

__all__ = ["app", "main"]
