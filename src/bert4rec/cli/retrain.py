"""``bert4rec retrain``: keep a model current from the event store, once or every so often."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from bert4rec.cli.db import DbOption
from bert4rec.cli.main import QuietOption, command, console, err_console
from bert4rec.errors import Bert4RecError
from bert4rec.evaluation.promotion import DEFAULT_MAX_DROP
from bert4rec.training.config import RETRAIN_MIN_EVENTS, WARM_SCHEDULE_SHARE


@command("retrain")
def retrain_command(
    models: Annotated[Path, typer.Option(
        help="The models folder: each round trains into a new folder in it, and MODELS/current (a symlink) names "
             "the live one; serve it with `bert4rec serve MODELS/current --watch 60`.")],
    db: DbOption = None,
    recipe: Annotated[str | None, typer.Option(
        help="A recipe name (paper, ml-1m-best, small) or a recipe TOML file; default: the defaults.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs, over the recipe's.")] = None,
    max_minutes: Annotated[float | None, typer.Option(help="Training time budget, over the recipe's.")] = None,
    max_drop: Annotated[float, typer.Option(
        help="Promote a new model unless its validation NDCG@10 is more than this share below the live model's.")]
    = DEFAULT_MAX_DROP,
    min_events: Annotated[int, typer.Option(
        help="Train nothing while the store holds fewer events than this (after filtering).")] = RETRAIN_MIN_EVENTS,
    warm: Annotated[bool, typer.Option(
        help="Start each round from the live model (a warm start: `train --init-from`), for a short schedule: "
             f"{WARM_SCHEDULE_SHARE:.0%} of the recipe's epochs unless --epochs is given.")] = False,
    every: Annotated[str | None, typer.Option(
        help="Run a round every period (90s, 30m, 24h, 7d) until interrupted; a failed round is logged and the "
             "next one still runs. Default: one round.")] = None,
    quiet: QuietOption = False,
) -> None:
    """Retrain from the event store: its events now -> a new model -> promoted unless worse on validation."""
    from bert4rec.training.retrain import parse_every, retrain

    period = parse_every(every) if every is not None else None
    overrides = {name: value for name, value in (("epochs", epochs), ("max_minutes", max_minutes))
                 if value is not None}
    if not 0 <= max_drop <= 1:
        raise Bert4RecError(f"--max-drop is a share between 0 and 1, not {max_drop}")

    def log(text: str) -> None:
        console.print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}", highlight=False, soft_wrap=True)

    while True:
        try:
            done = retrain(db, models, recipe, overrides, max_drop, min_events, warm, progress=not quiet, log=log)
            figure = f"{done.valid_ndcg10:.4f}" if done.valid_ndcg10 is not None else "none recorded"
            log(f"round done in {done.minutes:.1f} min: {done.events:,} events, validation NDCG@10 {figure}, "
                f"{'promoted' if done.promoted else 'not promoted'}")
        except Bert4RecError as exc:
            if period is None:
                raise
            err_console.print(f"[bold red]round failed:[/] {exc}", highlight=False, soft_wrap=True)
        if period is None:
            return
        log(f"next round in {every}")
        time.sleep(period)
