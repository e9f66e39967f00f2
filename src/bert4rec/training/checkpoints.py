"""What a run leaves in its folder as it goes: the checkpoint that --resume continues from, the per-epoch
history, and the snapshots that checkpoint averaging reads. Every file is written atomically."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from bert4rec.errors import Bert4RecError
from bert4rec.files import (
    CHECKPOINT_FILE,
    HISTORY_FILE,
    SNAPSHOTS_DIR,
    atomic_write,
    atomic_write_text,
    verify_digests,
)
from bert4rec.model.modeling import Bert4Rec


@dataclass
class TrainState:
    epoch: int = 0  # epochs finished
    best_ndcg: float | None = None  # the best validation NDCG@10 so far; None before the first validation
    best_epoch: int = 0
    bad_rounds: int = 0
    train_seconds: float = 0.0


def save_checkpoint(out: Path, model, averaged, optimizer, scheduler, state: TrainState,
                     history: list[dict]) -> None:
    """Model (and its moving average), optimizer, scheduler and progress. RNG states need no saving: each epoch's
    generators are derived from (seed, epoch, rank) by ``epoch_seeds``."""
    payload = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
               "state": asdict(state), "history": json.dumps(history)}
    if averaged is not None:
        payload["averaged"] = averaged.state_dict()
    atomic_write(out / CHECKPOINT_FILE, lambda p: torch.save(payload, p), digest=True)


def load_checkpoint(out: Path, model, averaged, optimizer, scheduler) -> tuple[TrainState, list]:
    path = out / CHECKPOINT_FILE
    verify_digests(out, [CHECKPOINT_FILE])
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(payload["model"])
        if averaged is not None:
            averaged.load_state_dict(payload["averaged"])
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        state = TrainState(**payload["state"])
        if state.best_ndcg is not None and state.best_ndcg < 0:  # how checkpoints once said "not validated yet"
            state.best_ndcg = None
        return state, json.loads(payload["history"])
    except FileNotFoundError:
        raise Bert4RecError(f"{path}: no checkpoint to resume from") from None
    except Exception as exc:  # any unpickling or shape problem means the file is not ours or is damaged
        raise Bert4RecError(f"{path}: corrupt or incompatible checkpoint ({type(exc).__name__}: {exc})") from None


def write_history(out: Path, history: list[dict]) -> None:
    atomic_write_text(out / HISTORY_FILE, "".join(json.dumps(h) + "\n" for h in history))


def save_snapshot(out: Path, model: Bert4Rec, epoch: int, keep: int) -> None:
    """The weights validated at ``epoch``, as a model folder in snapshots/; only the newest ``keep`` stay. A run
    resumed after a crash validates the epoch again and writes its snapshot over any half-written one."""
    folder = out / SNAPSHOTS_DIR / f"epoch-{epoch:05d}"
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder)
    for stale in sorted((out / SNAPSHOTS_DIR).glob("epoch-*"))[:-keep]:
        shutil.rmtree(stale)


def averaged_snapshots(out: Path) -> tuple[list[int], Bert4Rec] | None:
    """The epochs of the snapshots in ``out`` and a model with their mean weights; None with fewer than two."""
    folders = sorted((out / SNAPSHOTS_DIR).glob("epoch-*"))
    if len(folders) < 2:
        return None
    models = [Bert4Rec.load(folder) for folder in folders]
    states = [m.state_dict() for m in models]
    # Integer buffers (the catalogue's genre and year ids) are the same in every snapshot: the first one's stay.
    mean = {name: torch.stack([s[name] for s in states]).mean(0) if tensor.is_floating_point() else tensor
            for name, tensor in states[0].items()}
    models[0].load_state_dict(mean)
    return [int(folder.name.removeprefix("epoch-")) for folder in folders], models[0]
