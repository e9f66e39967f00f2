"""The ``bert4rec`` command: thin typer commands over the library, one module per group, tables apart."""
# ruff: noqa: I001  (importing a module registers its commands, and `--help` lists them in this order)

from bert4rec.cli.main import app, main
from bert4rec.cli import data, train, evaluate, recommend, serve, db, retrain, quickstart  # noqa: F401

__all__ = ["app", "main"]
