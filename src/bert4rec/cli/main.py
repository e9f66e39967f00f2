"""The ``bert4rec`` application: the typer app, how a command reports an expected failure, and the options that
several commands share."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from bert4rec.errors import Bert4RecError

app = typer.Typer(
    help="BERT4Rec movie recommender: get MovieLens, prepare it, train, evaluate and recommend.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)


def command(*args, group: typer.Typer = app, **kwargs):
    """Register a command (on ``group``: the app or a command group) whose expected failures print one line and exit
    with status 2, and whose warnings print one line each."""

    def wrap(func):
        @functools.wraps(func)
        def run(*a, **kw):
            try:
                with warnings.catch_warnings():
                    warnings.showwarning = _show_warning
                    return func(*a, **kw)
            except Bert4RecError as exc:
                err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
                raise typer.Exit(2) from None
            except KeyboardInterrupt:
                err_console.print("interrupted")
                raise typer.Exit(130) from None

        return group.command(*args, **kwargs)(run)

    return wrap


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    err_console.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)


QuietOption = Annotated[bool, typer.Option(help="No progress bars.")]
SeedOption = Annotated[int, typer.Option(help="Random seed.")]
ModelDirArgument = Annotated[Path, typer.Argument(help="A model folder written by `bert4rec train`.")]


def main() -> None:
    app()
