"""Retraining from the event store, one round at a time: the store's events now -> a new model folder in MODELS ->
promoted (MODELS/current, a symlink, flipped to it) unless its validation NDCG@10 is worse than the live model's by
more than the allowed drop. A server started on ``MODELS/current --watch`` serves each promoted model in turn.

A round holds MODELS/.retrain.lock, so two retrains never write into one folder at once; a round that fails (too few
events, a store that cannot be read, a training error) leaves ``current`` as it was.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bert4rec.data.preprocess import load_prepared
from bert4rec.errors import Bert4RecError
from bert4rec.evaluation.promotion import DEFAULT_MAX_DROP, recorded_validation, refusal
from bert4rec.store import prepare_from_store
from bert4rec.training.config import RETRAIN_MIN_EVENTS
from bert4rec.training.loop import fit
from bert4rec.training.recipe import Recipe, load_recipe
from bert4rec.training.warm_start import shape_of, short_schedule

CURRENT = "current"  # the symlink to the live model's folder
LOCK_FILE = ".retrain.lock"


@dataclass(frozen=True)
class Round:
    folder: Path  # the model trained in this round (kept, promoted or not)
    promoted: bool
    reason: str | None  # why it was not promoted
    events: int  # the interactions it was trained and validated on
    valid_ndcg10: float | None
    minutes: float


def retrain(db: str, models: Path, recipe: str | None = None, overrides: dict | None = None,
            max_drop: float = DEFAULT_MAX_DROP, min_events: int = RETRAIN_MIN_EVENTS, warm: bool = False,
            progress: bool = True, log: Callable[[str], None] = print) -> Round:
    """One round: prepare the store's events, train a model into a new folder of ``models`` (with ``warm``, starting
    from the live model, if there is one), and promote it unless it does worse on validation than ``max_drop``
    allows. ``overrides`` are training settings (``TrainConfig`` fields) given over the recipe."""
    models = Path(models)
    started = time.monotonic()
    with exclusive(models):
        folder = _new_folder(models)
        with tempfile.TemporaryDirectory(prefix=".prepared-", dir=models) as tmp:
            log(f"reading the events of {db}")
            stats = prepare_from_store(db, Path(tmp) / "dataset", progress=progress)
            if stats["num_interactions"] < min_events:
                raise Bert4RecError(f"{db}: {stats['num_interactions']:,} events after filtering, fewer than the "
                                    f"{min_events:,} a round needs (--min-events); the live model stays")
            dataset = load_prepared(Path(tmp) / "dataset")
        chosen = load_recipe(recipe) if recipe else Recipe("defaults")
        live, shape = models / CURRENT, None
        if warm and live.exists():
            overrides = short_schedule(chosen, overrides or {}) | {"init_from": str(live.resolve())}
            shape = shape_of(live)
            log(f"starting from the live model, {live.resolve().name}")
        model_config, config = chosen.build(dataset.vocab.num_items, shape, overrides)
        log(f"training on {stats['num_interactions']:,} events of {stats['num_users']:,} users into {folder}")
        fit(dataset, folder, model_config, config, progress=progress,
            recipe=chosen.provenance({}, overrides or {}) if recipe else None)
        reason = refusal(folder, live if live.exists() else None, max_drop)
        if reason is None:
            point(live, folder)
            log(f"promoted: {live} -> {folder.name}")
        else:
            log(f"refused, the live model stays: {reason}")
    return Round(folder, reason is None, reason, stats["num_interactions"], recorded_validation(folder),
                 (time.monotonic() - started) / 60)


@contextlib.contextmanager
def exclusive(models: Path) -> Iterator[None]:
    """Hold the models folder's retrain lock for the block; another holder is a clear error, not a wait."""
    models.mkdir(parents=True, exist_ok=True)
    with open(models / LOCK_FILE, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Bert4RecError(f"{models}: another retrain is running (it holds {LOCK_FILE})") from None
        yield


def point(link: Path, target: Path) -> None:
    """Make ``link`` a symlink to ``target`` in one step: readers see the old target or the new, never neither."""
    fresh = link.with_name(f".{link.name}.new")
    fresh.unlink(missing_ok=True)
    fresh.symlink_to(target.name if target.parent == link.parent else target.resolve())
    os.replace(fresh, link)


def _new_folder(models: Path) -> Path:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    folder, n = models / stamp, 1
    while folder.exists():
        folder, n = models / f"{stamp}-{n}", n + 1
    return folder


def parse_every(text: str) -> float:
    """Seconds in a period such as 90s, 30m, 24h or 7d."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = text[:-1], text[-1:].lower()
    try:
        seconds = float(number) * units[unit]
    except (KeyError, ValueError):
        raise Bert4RecError(f"--every {text!r}: give a number and a unit, s, m, h or d (e.g. 24h)") from None
    if not seconds > 0:
        raise Bert4RecError(f"--every {text!r}: the period must be above zero")
    return seconds
