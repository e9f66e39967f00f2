"""Training: one loop, top to bottom — cloze samples per epoch, AdamW, warm-up + linear decay, validation with
full-ranking NDCG@10, early stopping, the best model kept, an atomic checkpoint every epoch and exact resume.
Optionally an exponential moving average of the weights is validated and kept instead of the raw weights.
With a smaller holdout (``TrainConfig.holdout``) training also learns from the validation items, or from every
item; there is then nothing to validate on, so the schedule runs to its end and its last weights are kept.

A model folder holds:
    config.json, model.safetensors   the best model so far (by validation NDCG@10), or the last (no validation)
    dataset/                          the prepared dataset it was trained on (histories, vocabulary, movies)
    train_config.json                 the training settings
    checkpoint.pt                     the last finished epoch, for --resume (tensors and plain values only)
    history.jsonl, curves.png         per-epoch loss, validation metrics and seconds
"""

from __future__ import annotations

import ctypes
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from bert4rec import distributed, evaluate
from bert4rec.distributed import Dist
from bert4rec.errors import Bert4RecError
from bert4rec.fsutil import atomic_write, atomic_write_text, write_dir_atomically
from bert4rec.losses import LOSSES, SampledSoftmax, full_softmax
from bert4rec.model import IGNORE, WEIGHTS_FILE, Bert4Rec, Bert4RecConfig, ItemLoss
from bert4rec.preprocess import DATASET_DIR, MIN_EVAL_LENGTH, PreparedDataset, load_prepared, save_prepared
from bert4rec.sequences import (
    cloze_samples,
    cloze_types,
    crop,
    length_bucketed_batches,
    right_aligned,
    training_windows,
)

PRECISIONS = ("auto", "bf16", "fp32")
CHECKPOINT_FILE = "checkpoint.pt"
TRAIN_CONFIG_FILE = "train_config.json"
HISTORY_FILE = "history.jsonl"
# What training leaves out of each user's sequence (users with fewer than MIN_EVAL_LENGTH items are never held out):
# valid: the validation and test items, so validation picks the kept epoch; test: only the test item, for a final
# fit whose settings earlier validated runs chose; none: nothing, a model to serve rather than to evaluate.
HOLDOUT_ITEMS = evaluate.TARGET_FROM_END | {"none": 0}  # a holdout keeps out its split's target and all after
EMA_HORIZON = 0.05  # by default the moving average of the weights spans about this share of all training steps


@dataclass
class TrainConfig:
    epochs: int = 200
    batch_size: int = 16  # the paper's 128 learns far less per epoch on ML-1M at about the same cost (README)
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.02  # of all steps
    grad_clip: float = 5.0
    mask_prob: float = 0.2
    last_item_fraction: float = 0.1  # samples whose only masked item is the most recent one
    valid_every: int = 1  # epochs between validations
    patience: int | None = 10  # validations without improvement before stopping; None: never stop early
    max_minutes: float | None = None  # stop after the epoch that crosses this training-time budget
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 elsewhere
    bucketing: bool = True  # batch sequences of similar length together and pad each batch to its longest
    loss: str = "full"  # full: exact softmax over all items (chunked when large); sampled: K popularity negatives
    negatives: int = 1024  # K for the sampled softmax
    exclude_seen: bool = True  # leave each target's window-mates out of its softmax, as evaluation does the history
    # Validate and keep a moving average of the weights, updated every step, with this decay. None: the decay whose
    # horizon is EMA_HORIZON of the schedule (ML-1M, 200 epochs at batch 16: 0.99982); 0: the raw weights.
    ema_decay: float | None = None
    holdout: str = "valid"  # see HOLDOUT_ITEMS
    shift_windows: bool = True  # move every window but each user's most recent by a random amount each epoch

    @property
    def validates(self) -> bool:
        return self.holdout == "valid"

    def trained_on(self, split: str) -> bool:
        """Whether training saw the targets of ``split`` ("valid" or "test"), which would make its figures void."""
        return HOLDOUT_ITEMS[self.holdout] < evaluate.TARGET_FROM_END[split]

    def validate(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.valid_every < 1:
            raise Bert4RecError("epochs, batch size and validation interval must be positive")
        if not 0 < self.mask_prob <= 1 or not 0 <= self.last_item_fraction <= 1:
            raise Bert4RecError("mask probability must be in (0, 1] and the last-item fraction in [0, 1]")
        if self.lr <= 0:
            raise Bert4RecError("learning rate must be positive")
        if self.loss not in LOSSES:
            raise Bert4RecError(f"loss must be one of {', '.join(LOSSES)}, not '{self.loss}'")
        if self.negatives < 1:
            raise Bert4RecError("the number of sampled negatives must be positive")
        if self.ema_decay is not None and not 0 <= self.ema_decay < 1:
            raise Bert4RecError("the weight-averaging decay must be in [0, 1) (0: off)")
        if self.holdout not in HOLDOUT_ITEMS:
            raise Bert4RecError(f"holdout must be one of {', '.join(HOLDOUT_ITEMS)}, not '{self.holdout}'")
        if self.precision not in PRECISIONS:
            raise Bert4RecError(f"precision must be one of {', '.join(PRECISIONS)}, not '{self.precision}'")

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise Bert4RecError(f"{path}: unreadable training config ({exc})") from None
        # Runs set up before these options trained without them; resuming one must not switch them on.
        data = {"exclude_seen": False, "ema_decay": 0.0, "shift_windows": False} | data
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


def pick_device(requested: str = "auto") -> torch.device:
    if requested != "auto":
        try:
            device = torch.device(requested)
        except RuntimeError as exc:
            raise Bert4RecError(f"unknown device '{requested}' ({exc})") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise Bert4RecError("--device cuda requested but CUDA is not available")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise Bert4RecError("--device mps requested but Apple MPS is not available")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def use_bf16(precision: str, device: torch.device) -> bool:
    """bf16 autocast on CUDA by default. On CPU it is opt-in: with fused attention, bf16 measured slower than fp32
    on an AVX512-BF16 CPU (benchmarks/speed.py)."""
    if precision != "auto":
        return precision == "bf16"
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def random_batches(count: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(count)
    return [order[i : i + batch_size] for i in range(0, count, batch_size)]


def ema_decay(config: TrainConfig, total_steps: int) -> float:
    """The weight-averaging decay per step: as configured, or by default one whose horizon, 1 / (1 - decay) steps,
    is EMA_HORIZON of the schedule (none for schedules too short to average over)."""
    if config.ema_decay is not None:
        return config.ema_decay
    return max(0.0, 1 - 1 / (EMA_HORIZON * total_steps))


def make_optimizer(model: Bert4Rec, config: TrainConfig, fused: bool | None = None) -> torch.optim.Optimizer:
    """AdamW with weight decay on matrices only: none on LayerNorm weights and biases. Fused (one kernel for all
    parameters) on CPU and CUDA unless ``fused`` says otherwise: on this project's CPU the per-tensor loop took 4x
    as long, 5% of an ML-1M training step (benchmarks/train_step.py)."""
    if fused is None:
        fused = next(model.parameters()).device.type in ("cpu", "cuda")
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=config.lr, fused=fused)


@dataclass
class TrainState:
    epoch: int = 0  # epochs finished
    best_ndcg: float = -1.0
    best_epoch: int = 0
    bad_rounds: int = 0
    train_seconds: float = 0.0


def _save_checkpoint(out: Path, model, averaged, optimizer, scheduler, state: TrainState,
                     history: list[dict]) -> None:
    """Model (and its moving average), optimizer, scheduler and progress. RNG states need no saving: each epoch's
    generators are derived from (seed, epoch, rank) by ``epoch_seeds``."""
    payload = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
               "state": asdict(state), "history": json.dumps(history)}
    if averaged is not None:
        payload["averaged"] = averaged.state_dict()
    atomic_write(out / CHECKPOINT_FILE, lambda p: torch.save(payload, p))


def _load_checkpoint(out: Path, model, averaged, optimizer, scheduler) -> tuple[TrainState, list]:
    path = out / CHECKPOINT_FILE
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(payload["model"])
        if averaged is not None:
            averaged.load_state_dict(payload["averaged"])
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        return TrainState(**payload["state"]), json.loads(payload["history"])
    except FileNotFoundError:
        raise Bert4RecError(f"{path}: no checkpoint to resume from") from None
    except Exception as exc:  # any unpickling or shape problem means the file is not ours or is damaged
        raise Bert4RecError(f"{path}: corrupt or incompatible checkpoint ({type(exc).__name__}: {exc})") from None


def _write_history(out: Path, history: list[dict]) -> None:
    atomic_write_text(out / HISTORY_FILE, "".join(json.dumps(h) + "\n" for h in history))


def plot_curves(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_ndcg) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax_loss.plot([h["epoch"] for h in history], [h["loss"] for h in history], color="tab:blue")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="cloze loss")
    validated = [h for h in history if "valid_NDCG@10" in h]
    ax_ndcg.plot([h["epoch"] for h in validated], [h["valid_NDCG@10"] for h in validated], "o-", color="tab:green")
    ax_ndcg.set(xlabel="epoch", ylabel="NDCG@10", title="validation NDCG@10 (full ranking)")
    for ax in (ax_loss, ax_ndcg):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)


class TrainingWindows:
    """Right-aligned (S, max_len) windows over the items that ``holdout`` leaves to training, and for a rating- or
    time-aware model the matching packed token types; with ``shift``, drawn afresh every epoch (training_windows)."""

    def __init__(self, dataset: PreparedDataset, max_len: int, with_types: bool = False, holdout: str = "valid",
                 shift: bool = False):
        seqs = dataset.sequences()
        self.tokens, self.offsets, self.max_len, self.shift = seqs.tokens, seqs.offsets, max_len, shift
        self.types = seqs.token_types() if with_types else None
        lengths = seqs.lengths
        self.train_lengths = np.where(lengths >= MIN_EVAL_LENGTH, lengths - HOLDOUT_ITEMS[holdout], lengths)
        bounds = training_windows(self.offsets, self.train_lengths, max_len)
        # Unshifted: a shift only adds back the odd oldest window that would hold a single item unshifted, so the
        # schedule, sized from this count, runs out a few steps before an epoch of shifted windows does.
        self.count = len(bounds[0])
        if self.count == 0:
            raise Bert4RecError("no training sequences with at least two items")
        self._unshifted = None if shift else self._cut(*bounds)  # the same every epoch: cut once

    def item_counts(self, num_items: int) -> np.ndarray:
        """(N,) how often each item occurs among the items training reads (the holdout's targets left out)."""
        lengths = np.diff(self.offsets)
        position = np.arange(len(self.tokens)) - np.repeat(self.offsets[:-1], lengths)
        trained = position < np.repeat(self.train_lengths, lengths)
        return np.bincount(self.tokens[trained] - 1, minlength=num_items).astype(np.float64)

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
        if not self.shift:
            return self._unshifted
        shifts = rng.integers(0, self.max_len, len(self.train_lengths))
        return self._cut(*training_windows(self.offsets, self.train_lengths, self.max_len, shifts))

    def _cut(self, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        types = None if self.types is None else right_aligned(self.types, starts, ends, self.max_len)
        return right_aligned(self.tokens, starts, ends, self.max_len), types


def epoch_seeds(seed: int, epoch: int, rank: int) -> tuple[np.random.Generator, int]:
    """The epoch's sample RNG (shared by all ranks) and its dropout seed (one per rank).

    Deriving both from (seed, epoch) makes every epoch reproducible on its own: a resumed run draws exactly what
    the uninterrupted run drew, whatever happened before."""
    torch_seed = int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])
    return np.random.default_rng([seed, epoch]), torch_seed


def _epoch(model, averaged, data: TrainingWindows, config: TrainConfig, optimizer, scheduler, device, epoch: int,
           progress: bool, dist: Dist, loss_fn: ItemLoss) -> tuple[float, float]:
    """One pass over fresh cloze samples; returns (mean loss, sequences per second on this rank)."""
    model.train()
    rng, torch_seed = epoch_seeds(config.seed, epoch, dist.rank)
    torch.manual_seed(torch_seed)
    mask_token = _mask_token(model)
    windows, type_windows = data.draw(rng)
    samples = cloze_samples(windows, mask_token, config.mask_prob, config.last_item_fraction, rng)
    types = None if type_windows is None else cloze_types(type_windows, samples.labels, rng)
    global_batch = config.batch_size * dist.world
    if config.bucketing:
        batches = length_bucketed_batches(samples.lengths, global_batch, rng)
    else:
        batches = random_batches(len(samples.lengths), global_batch, rng)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16(config.precision, device))
    total_loss, seen, started = 0.0, 0, time.perf_counter()
    bar = tqdm(batches, desc=f"epoch {epoch}", unit="batch", leave=False, disable=not progress)
    for batch in bar:
        if len(batch) < dist.world:  # a last sliver too small to give every rank a row
            continue
        # Every rank sums the loss over its slice and divides by the global batch's masked count (times the world
        # size, which DDP's gradient averaging divides out): the gradient of the whole batch's mean loss.
        masked = int((samples.labels[batch] != IGNORE).sum())
        rows = np.array_split(batch, dist.world)[dist.rank]
        lengths = samples.lengths[rows] if config.bucketing else np.array([windows.shape[1]])
        inputs = torch.from_numpy(crop(samples.inputs[rows], lengths)).to(device, non_blocking=True)
        labels = torch.from_numpy(crop(samples.labels[rows], lengths)).to(device, non_blocking=True)
        token_types = None if types is None else torch.from_numpy(crop(types[rows], lengths)).to(device)
        with autocast:
            loss = model(inputs, labels, token_types, reduction="sum", loss=loss_fn,
                         exclude_seen=config.exclude_seen) * (dist.world / masked)
        optimizer_step(model, averaged, optimizer, scheduler, loss, config.grad_clip)
        mean_loss = loss.item() * masked / max(1, int((labels != IGNORE).sum())) / dist.world
        total_loss += mean_loss * len(rows)
        seen += len(rows)
        bar.set_postfix(loss=f"{mean_loss:.3f}", seq_s=f"{seen / (time.perf_counter() - started):.0f}")
    return total_loss / max(1, seen), seen / (time.perf_counter() - started)


def release_freed_memory() -> bool:
    """Hand the heap memory freed by an epoch back to the OS; True if any went back. glibc keeps it, and batches of
    varying length scatter it, so without this a 2-core ML-1M run's RSS grows from 1.4 GB to 2.2 GB (trimmed:
    0.8 GB)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):  # another C library (e.g. musl)
        return False


def optimizer_step(model, averaged: AveragedModel | None, optimizer, scheduler, loss: torch.Tensor,
                   grad_clip: float) -> None:
    """Backpropagate ``loss``, clip, step the optimizer and the schedule, and update the weight average."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    scheduler.step()
    if averaged is not None:
        averaged.update_parameters(getattr(model, "module", model))


def _mask_token(model) -> int:
    return getattr(model, "module", model).config.mask_token


def fit(dataset: PreparedDataset | None, out: Path, model_config: Bert4RecConfig | None = None,
        config: TrainConfig | None = None, resume: bool = False, progress: bool = True,
        on_epoch_end: Callable[[int], None] | None = None) -> dict:
    """Train into ``out`` (or continue the run there with ``resume``); returns a summary dict."""
    out = Path(out)
    if resume:
        if not has_run(out):
            raise Bert4RecError(f"{out}: nothing to resume (no {TRAIN_CONFIG_FILE}; not a training folder)")
        config = TrainConfig.load(out / TRAIN_CONFIG_FILE) if config is None else config
        dataset = load_prepared(out / DATASET_DIR)
        model_config = Bert4RecConfig.load(out)
    else:
        if dataset is None:
            raise Bert4RecError("no dataset to train on")
        config = config or TrainConfig()
        model_config = model_config or Bert4RecConfig(num_items=dataset.vocab.num_items)
        if model_config.num_items != dataset.vocab.num_items:
            raise Bert4RecError("model config and dataset disagree on the number of items")
    config.validate()
    dist = distributed.from_environment()
    device = distributed.start(dist, pick_device(config.device))
    progress = progress and dist.main
    torch.manual_seed(config.seed)  # the initial weights, identical on every rank
    model = Bert4Rec(model_config).to(device)
    trained = DistributedDataParallel(model) if dist.enabled else model
    data = TrainingWindows(dataset, model_config.max_len, model_config.reads_types, config.holdout,
                           config.shift_windows)
    loss_fn = (SampledSoftmax(data.item_counts(dataset.vocab.num_items), config.negatives)
               if config.loss == "sampled" else full_softmax)
    steps_per_epoch = math.ceil(data.count / (config.batch_size * dist.world))
    optimizer = make_optimizer(model, config)
    total_steps = steps_per_epoch * config.epochs
    decay = ema_decay(config, total_steps)
    # A deep copy, so every rank keeps the same average of the same (all-reduced) weights.
    averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay)) if decay > 0 else None
    scheduler = get_linear_schedule_with_warmup(optimizer, max(1, int(config.warmup_fraction * total_steps)),
                                                total_steps)
    if resume:
        if dist.main:
            for stale in out.glob(".*.tmp"):  # a write that a crash interrupted; never read, so just remove it
                stale.unlink(missing_ok=True)
        if (out / CHECKPOINT_FILE).exists():
            state, history = _load_checkpoint(out, model, averaged, optimizer, scheduler)
        else:  # stopped before the first epoch finished: start over with the saved settings
            state, history = TrainState(), []
    else:
        if dist.main:
            _set_up_run(out, dataset, model_config, config)
        state, history = TrainState(), []
    distributed.barrier(dist)

    epochs = tqdm(range(state.epoch + 1, config.epochs + 1), desc="training", unit="epoch",
                  initial=state.epoch, total=config.epochs, disable=not progress)
    for epoch in epochs:
        if distributed.agree(_should_stop(state, config), dist):
            break
        started = time.perf_counter()
        loss, seq_per_s = _epoch(trained, averaged, data, config, optimizer, scheduler, device, epoch,
                                 progress, dist, loss_fn)
        record = {"epoch": epoch, "loss": loss, "lr": scheduler.get_last_lr()[0],
                  "seq_per_s": seq_per_s * dist.world, "train_seconds": time.perf_counter() - started}
        state.train_seconds += record["train_seconds"]
        state.epoch = epoch
        if dist.main:
            if not config.validates:
                _kept(model, averaged).save(out)  # the folder always holds the latest model
            # The last epoch is validated, also when the time budget ends the run before the schedule does.
            elif epoch % config.valid_every == 0 or epoch == config.epochs or _out_of_time(state, config):
                _validate(model, averaged, dataset, device, state, record, out)
            record["seconds"] = time.perf_counter() - started
            history.append(record)
            _save_checkpoint(out, model, averaged, optimizer, scheduler, state, history)
            _write_history(out, history)
            epochs.set_postfix(loss=f"{loss:.3f}", ndcg10=f"{state.best_ndcg:.4f}")
        release_freed_memory()
        if on_epoch_end is not None:
            on_epoch_end(epoch)
    if dist.main:
        if not (out / WEIGHTS_FILE).exists():  # no epoch ran (a spent time budget): keep the weights there are
            _kept(model, averaged).save(out)
        plot_curves(history, out / "curves.png")
    distributed.stop(dist)
    return {"epochs": state.epoch, "best_epoch": state.best_epoch, "best_valid_NDCG@10": state.best_ndcg,
            "holdout": config.holdout,
            "train_seconds": state.train_seconds, "seconds_per_epoch": state.train_seconds / max(1, len(history)),
            "device": str(device), "processes": dist.world, "history": history}


def check_evaluable(model_dir: Path, split: str) -> None:
    """Refuse to evaluate a model on a split whose targets it trained on (see ``TrainConfig.holdout``)."""
    path = Path(model_dir) / TRAIN_CONFIG_FILE
    config = TrainConfig.load(path) if path.exists() else TrainConfig()  # an exported model: holdout unknown
    if config.trained_on(split):
        raise Bert4RecError(f"{model_dir}: trained on the {split} targets (--holdout {config.holdout}), so its "
                            f"{split} figures would mean nothing")


def has_run(out: Path) -> bool:
    """Whether ``out`` holds a training run that ``resume`` can continue."""
    return (Path(out) / TRAIN_CONFIG_FILE).is_file()


def _set_up_run(out: Path, dataset: PreparedDataset, model_config: Bert4RecConfig, config: TrainConfig) -> None:
    """Create the run folder all at once: a crash leaves either a complete set-up or none."""
    if out.exists() and any(out.iterdir()):
        raise Bert4RecError(f"{out} already exists and is not empty")

    def write(tmp: Path) -> None:
        save_prepared(dataset, tmp / DATASET_DIR)
        model_config.save(tmp)
        atomic_write_text(tmp / TRAIN_CONFIG_FILE, json.dumps(asdict(config), indent=2))

    write_dir_atomically(out, write)


def _should_stop(state: TrainState, config: TrainConfig) -> bool:
    if config.patience is not None and state.bad_rounds >= config.patience:
        return True
    return _out_of_time(state, config)


def _out_of_time(state: TrainState, config: TrainConfig) -> bool:
    return config.max_minutes is not None and state.train_seconds >= 60 * config.max_minutes


def _kept(model: Bert4Rec, averaged: AveragedModel | None) -> Bert4Rec:
    """The weights that training validates and keeps: their moving average when there is one."""
    return model if averaged is None else averaged.module


def _validation_metrics(model: Bert4Rec, dataset, device) -> dict:
    model.eval()
    result = evaluate.evaluate_scorer(evaluate.model_scorer(model, device), dataset, "valid",
                                      model.config.max_len, sampled=False)
    return result["full"]


def _validate(model, averaged, dataset, device, state: TrainState, record: dict, out: Path) -> None:
    """Validate the kept weights and save them if they are the best so far; with a moving average, the raw
    weights' NDCG@10 is recorded beside it (``valid_raw_NDCG@10``) to show what averaging adds."""
    kept = _kept(model, averaged)
    record |= {f"valid_{k}": v for k, v in _validation_metrics(kept, dataset, device).items()}
    if averaged is not None:
        record["valid_raw_NDCG@10"] = _validation_metrics(model, dataset, device)["NDCG@10"]
    if record["valid_NDCG@10"] > state.best_ndcg:
        state.best_ndcg, state.best_epoch, state.bad_rounds = record["valid_NDCG@10"], record["epoch"], 0
        kept.save(out)
    else:
        state.bad_rounds += 1
