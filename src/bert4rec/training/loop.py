"""Training: one loop, top to bottom — cloze samples per epoch, AdamW, warm-up + linear decay, validation with
full-ranking NDCG@10, early stopping, the best model kept, an atomic checkpoint every epoch and exact resume.
Optionally an exponential moving average of the weights is validated and kept instead of the raw weights.
With a smaller holdout (``TrainConfig.holdout``) training also learns from the validation items, or from every
item; there is then nothing to validate on, so the schedule runs to its end and its last weights are kept.
What a run writes into its folder is listed in ``bert4rec.files``.
"""

from __future__ import annotations

import ctypes
import functools
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from transformers import get_linear_schedule_with_warmup

from bert4rec import progress as progress_bars
from bert4rec.data.item_features import genre_names
from bert4rec.data.preprocess import PreparedDataset, load_prepared, save_prepared
from bert4rec.errors import Bert4RecError
from bert4rec.evaluation.protocols import evaluate_scorer
from bert4rec.files import (
    CHECKPOINT_FILE,
    CURVES_FILE,
    DATASET_DIR,
    MODEL_CONFIG_FILE,
    TRAIN_CONFIG_FILE,
    WEIGHTS_FILE,
    atomic_write_text,
    verify_digests,
    write_dir_atomically,
)
from bert4rec.model.config import Bert4RecConfig
from bert4rec.model.device import pick_device
from bert4rec.model.inputs import IGNORE, cloze_samples, cloze_types
from bert4rec.model.losses import SampledSoftmax, full_softmax
from bert4rec.model.modeling import Bert4Rec, ItemLoss
from bert4rec.model.scoring import model_scorer
from bert4rec.training import distributed
from bert4rec.training.checkpoints import (
    TrainState,
    averaged_snapshots,
    load_checkpoint,
    save_checkpoint,
    save_snapshot,
    write_history,
)
from bert4rec.training.config import EMA_HORIZON, TrainConfig
from bert4rec.training.curves import plot_curves
from bert4rec.training.distributed import Dist
from bert4rec.training.warm_start import set_catalogue_features, warm_start
from bert4rec.training.windows import TrainingWindows, crop, length_bucketed_batches, random_batches


@dataclass
class _Run:
    """What one training run works with, built once for a new run and a resumed one alike."""

    model: Bert4Rec
    trained: torch.nn.Module  # the model, wrapped in DDP when distributed
    averaged: AveragedModel | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    data: TrainingWindows
    loss_fn: ItemLoss
    device: torch.device
    dist: Dist


def use_bf16(precision: str, device: torch.device) -> bool:
    """bf16 autocast on CUDA by default. On CPU it is opt-in: with fused attention, bf16 measured slower than fp32
    on an AVX512-BF16 CPU (benchmarks/speed.py)."""
    if precision != "auto":
        return precision == "bf16"
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def ema_decay(config: TrainConfig, total_steps: int) -> float:
    """The weight-averaging decay per step: as configured, or by default one whose horizon, 1 / (1 - decay) steps,
    is EMA_HORIZON of the schedule (none for schedules too short to average over)."""
    if config.ema_decay is not None:
        return config.ema_decay
    return max(0.0, 1 - 1 / (EMA_HORIZON * total_steps))


def make_optimizer(model: Bert4Rec, config: TrainConfig, fused: bool | None = None) -> torch.optim.Optimizer:
    """AdamW with weight decay on matrices only: none on LayerNorm weights and biases. Fused (one kernel for all
    parameters) on CPU and CUDA unless ``fused`` says otherwise: the per-tensor loop is several times slower
    (benchmarks/train_step.py measures it)."""
    if fused is None:
        fused = next(model.parameters()).device.type in ("cpu", "cuda")
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=config.lr, fused=fused)


def epoch_seeds(seed: int, epoch: int, rank: int) -> tuple[np.random.Generator, int]:
    """The epoch's sample RNG (shared by all ranks) and its dropout seed (one per rank).

    Deriving both from (seed, epoch) makes every epoch reproducible on its own: a resumed run draws exactly what
    the uninterrupted run drew, whatever happened before."""
    torch_seed = int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])
    return np.random.default_rng([seed, epoch]), torch_seed


def _epoch(run: _Run, config: TrainConfig, epoch: int, progress: bool) -> tuple[float, float]:
    """One pass over fresh cloze samples; returns (mean loss, sequences per second on this rank)."""
    model, dist, device = run.trained, run.dist, run.device
    model.train()
    rng, torch_seed = epoch_seeds(config.seed, epoch, dist.rank)
    torch.manual_seed(torch_seed)
    windows, type_windows = run.data.draw(rng)
    samples = cloze_samples(windows, run.model.config.mask_token, config.mask_prob, config.last_item_fraction, rng)
    types = None if type_windows is None else cloze_types(type_windows, samples.labels, rng)
    global_batch = config.batch_size * dist.world
    if config.bucketing:
        batches = length_bucketed_batches(samples.lengths, global_batch, rng)
    else:
        batches = random_batches(len(samples.lengths), global_batch, rng)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16(config.precision, device))
    total_loss, seen, started = 0.0, 0, time.perf_counter()
    bar = progress_bars.bar(batches, progress, desc=f"epoch {epoch}", unit="batch", leave=False)
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
            loss = model(inputs, labels, token_types, reduction="sum", loss=run.loss_fn,
                         exclude_seen=config.exclude_seen) * (dist.world / masked)
        optimizer_step(model, run.averaged, run.optimizer, run.scheduler, loss, config.grad_clip)
        mean_loss = loss.item() * masked / max(1, int((labels != IGNORE).sum())) / dist.world
        total_loss += mean_loss * len(rows)
        seen += len(rows)
        bar.set_postfix(loss=f"{mean_loss:.3f}", seq_s=f"{seen / (time.perf_counter() - started):.0f}")
    return total_loss / max(1, seen), seen / (time.perf_counter() - started)


def release_freed_memory() -> bool:
    """Hand the heap memory freed by an epoch back to the OS; True if any went back. glibc keeps it, and batches of
    varying length scatter it, so without this a long run's memory creeps up epoch after epoch."""
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


@functools.cache
def _glibc():
    """The C library, if it is glibc (the one with malloc_trim), opened once."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:  # another C library (e.g. musl)
        return None


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


def fit(dataset: PreparedDataset | None, out: Path, model_config: Bert4RecConfig | None = None,
        config: TrainConfig | None = None, resume: bool = False, progress: bool = True,
        on_epoch_end: Callable[[int], None] | None = None, recipe: dict | None = None) -> dict:
    """Train into ``out`` (or continue the run there with ``resume``); returns a summary dict. ``recipe`` (its
    name and the settings given over it) is recorded in train_config.json."""
    out = Path(out)
    dataset, model_config, config = _settings(dataset, out, model_config, config, resume)
    run = _build(dataset, model_config, config)
    progress = progress and run.dist.main
    state, history = _start(run, out, dataset, model_config, config, resume, recipe)
    epochs = progress_bars.bar(range(state.epoch + 1, config.epochs + 1), progress, desc="training", unit="epoch",
                               initial=state.epoch, total=config.epochs)
    for epoch in epochs:
        if distributed.agree(_should_stop(state, config), run.dist):
            break
        record = _train_epoch(run, config, epoch, state, progress)
        if run.dist.main:
            _record_epoch(run, config, dataset, state, record, history, out)
            summary = _progress_summary(record, state)
            epochs.set_postfix_str(summary)
            progress_bars.line(f"epoch {epoch}/{config.epochs}: {summary}", progress)
        release_freed_memory()
        if on_epoch_end is not None:
            on_epoch_end(epoch)
    averaged = None
    if run.dist.main:
        if not (out / WEIGHTS_FILE).exists():  # no epoch ran (a spent time budget): keep the weights there are
            _kept(run.model, run.averaged).save(out)
        if config.average_last > 1:
            averaged = _validate_average(dataset, run.device, state, out)
        plot_curves(history, out / CURVES_FILE)
    distributed.stop(run.dist)
    return {"epochs": state.epoch, "best_epoch": state.best_epoch, "best_valid_NDCG@10": state.best_ndcg,
            "averaged": averaged, "holdout": config.holdout,
            "train_seconds": state.train_seconds, "seconds_per_epoch": state.train_seconds / max(1, len(history)),
            "device": str(run.device), "processes": run.dist.world, "history": history}


def _settings(dataset: PreparedDataset | None, out: Path, model_config: Bert4RecConfig | None,
              config: TrainConfig | None, resume: bool) -> tuple[PreparedDataset, Bert4RecConfig, TrainConfig]:
    """The dataset and settings of the run: those saved in ``out`` when resuming, else the ones given."""
    if resume:
        if not has_run(out):
            raise Bert4RecError(f"{out}: nothing to resume (no {TRAIN_CONFIG_FILE}; not a training folder)")
        config = TrainConfig.load(out / TRAIN_CONFIG_FILE) if config is None else config
        dataset = load_prepared(out / DATASET_DIR)
        verify_digests(out, [MODEL_CONFIG_FILE])
        model_config = Bert4RecConfig.load(out)
    else:
        if dataset is None:
            raise Bert4RecError("no dataset to train on")
        config = config or TrainConfig()
        model_config = model_config or Bert4RecConfig(num_items=dataset.vocab.num_items)
        if model_config.num_items != dataset.vocab.num_items:
            raise Bert4RecError("model config and dataset disagree on the number of items")
        if model_config.genre_aware and not model_config.genres:  # a warm start keeps its source's vocabulary
            model_config.genres = genre_names(dataset.movies["genres"])
            if not model_config.genres:
                raise Bert4RecError("--genre-aware: the catalogue lists no genres")
    config.validate()
    return dataset, model_config, config


def _build(dataset: PreparedDataset, model_config: Bert4RecConfig, config: TrainConfig) -> _Run:
    """Join the process group, then build the model, its weight average, the optimizer and its schedule."""
    dist = distributed.from_environment()
    device = distributed.start(dist, pick_device(config.device))
    torch.manual_seed(config.seed)  # the initial weights, identical on every rank
    model = Bert4Rec(model_config)
    set_catalogue_features(model, dataset)
    if config.init_from is not None:
        warm_start(model, Path(config.init_from), dataset)
    model = model.to(device)
    data = TrainingWindows(dataset, model_config.max_len, model_config.reads_types, config.holdout,
                           config.shift_windows)
    loss_fn = (SampledSoftmax(data.item_counts(dataset.vocab.num_items), config.negatives)
               if config.loss == "sampled" else full_softmax)
    optimizer = make_optimizer(model, config)
    total_steps = math.ceil(data.count / (config.batch_size * dist.world)) * config.epochs
    decay = ema_decay(config, total_steps)
    # A deep copy, so every rank keeps the same average of the same (all-reduced) weights.
    averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay)) if decay > 0 else None
    scheduler = get_linear_schedule_with_warmup(optimizer, max(1, int(config.warmup_fraction * total_steps)),
                                                total_steps)
    trained = DistributedDataParallel(model) if dist.enabled else model
    return _Run(model, trained, averaged, optimizer, scheduler, data, loss_fn, device, dist)


def _start(run: _Run, out: Path, dataset: PreparedDataset, model_config: Bert4RecConfig, config: TrainConfig,
           resume: bool, recipe: dict | None) -> tuple[TrainState, list[dict]]:
    """Set up the run folder, or reload the last checkpoint of the run there; every rank waits for rank 0."""
    state, history = TrainState(), []
    if resume:
        if run.dist.main:
            for stale in out.glob(".*.tmp"):  # a write that a crash interrupted; never read, so just remove it
                stale.unlink(missing_ok=True)
        if (out / CHECKPOINT_FILE).exists():  # else it stopped before its first epoch: start over, same settings
            state, history = load_checkpoint(out, run.model, run.averaged, run.optimizer, run.scheduler)
    elif run.dist.main:
        _set_up_run(out, dataset, model_config, config, recipe)
    distributed.barrier(run.dist)
    return state, history


def _train_epoch(run: _Run, config: TrainConfig, epoch: int, state: TrainState, progress: bool) -> dict:
    started = time.perf_counter()
    loss, seq_per_s = _epoch(run, config, epoch, progress)
    record = {"epoch": epoch, "loss": loss, "lr": run.scheduler.get_last_lr()[0],
              "seq_per_s": seq_per_s * run.dist.world, "train_seconds": time.perf_counter() - started}
    state.train_seconds += record["train_seconds"]
    state.epoch = epoch
    return record


def _record_epoch(run: _Run, config: TrainConfig, dataset: PreparedDataset, state: TrainState, record: dict,
                  history: list[dict], out: Path) -> None:
    """Rank 0: validate when it is time (and keep the model if it is the best), then checkpoint the epoch."""
    if not config.validates:
        _kept(run.model, run.averaged).save(out)  # the folder always holds the latest model
    # The last epoch is validated, also when the time budget ends the run before the schedule does.
    elif record["epoch"] % config.valid_every == 0 or record["epoch"] == config.epochs or _out_of_time(state, config):
        _validate(run.model, run.averaged, dataset, run.device, state, record, out, config.average_last)
    record["seconds"] = record["train_seconds"] + record.pop("valid_seconds", 0.0)
    history.append(record)
    save_checkpoint(out, run.model, run.averaged, run.optimizer, run.scheduler, state, history)
    write_history(out, history)


def _progress_summary(record: dict, state: TrainState) -> str:
    """The epoch's loss, and the best validation NDCG@10 once there is one."""
    summary = f"loss={record['loss']:.3f}"
    return summary if state.best_ndcg is None else f"{summary}, best ndcg10={state.best_ndcg:.4f}"


def has_run(out: Path) -> bool:
    """Whether ``out`` holds a training run that ``resume`` can continue."""
    return (Path(out) / TRAIN_CONFIG_FILE).is_file()


def _set_up_run(out: Path, dataset: PreparedDataset, model_config: Bert4RecConfig, config: TrainConfig,
                recipe: dict | None) -> None:
    """Create the run folder all at once: a crash leaves either a complete set-up or none."""
    if out.exists() and any(out.iterdir()):
        raise Bert4RecError(f"{out} already exists and is not empty")

    def write(tmp: Path) -> None:
        save_prepared(dataset, tmp / DATASET_DIR)
        model_config.save(tmp)
        settings = asdict(config) | ({"recipe": recipe} if recipe else {})
        atomic_write_text(tmp / TRAIN_CONFIG_FILE, json.dumps(settings, indent=2))

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


def _validation_metrics(model: Bert4Rec, dataset: PreparedDataset, device: torch.device) -> dict:
    model.eval()
    result = evaluate_scorer(model_scorer(model, device), dataset, "valid", model.config.max_len, sampled=False)
    return result["full"]


def _validate(model, averaged, dataset, device, state: TrainState, record: dict, out: Path,
              snapshots: int = 0) -> None:
    """Validate the kept weights and save them if they are the best so far; with a moving average, the raw
    weights' NDCG@10 is recorded beside it (``valid_raw_NDCG@10``) to show what averaging adds. With
    ``snapshots`` > 1 the validated weights are also kept in snapshots/ for checkpoint averaging."""
    started = time.perf_counter()
    kept = _kept(model, averaged)
    record |= {f"valid_{k}": v for k, v in _validation_metrics(kept, dataset, device).items()}
    if averaged is not None:
        record["valid_raw_NDCG@10"] = _validation_metrics(model, dataset, device)["NDCG@10"]
    if state.best_ndcg is None or record["valid_NDCG@10"] > state.best_ndcg:
        state.best_ndcg, state.best_epoch, state.bad_rounds = record["valid_NDCG@10"], record["epoch"], 0
        kept.save(out)
    else:
        state.bad_rounds += 1
    if snapshots > 1:
        save_snapshot(out, kept, record["epoch"], snapshots)
    record["valid_seconds"] = time.perf_counter() - started


def _validate_average(dataset: PreparedDataset, device: torch.device, state: TrainState, out: Path) -> dict | None:
    """Checkpoint averaging: validate the mean of the snapshots' weights, and keep it in place of the best model
    if it validates better. Returns its epochs, validation metrics and whether it was kept; None with fewer than
    two snapshots (a run that validated once)."""
    found = averaged_snapshots(out)
    if found is None:
        return None
    epochs, model = found
    metrics = _validation_metrics(model.to(device), dataset, device)
    kept = state.best_ndcg is None or metrics["NDCG@10"] > state.best_ndcg
    if kept:
        model.save(out)
    return {"epochs": epochs, "valid": metrics, "kept": kept}
