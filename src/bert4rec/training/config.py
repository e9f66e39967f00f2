"""Training settings: every default of the training loop, in one place (the CLI and the recipes read them)."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

from bert4rec.errors import Bert4RecError
from bert4rec.evaluation.splits import HOLDOUT_ITEMS

PRECISIONS = ("auto", "bf16", "fp32")
LOSSES = ("full", "sampled")  # see model.losses: the exact softmax, or SampledSoftmax
EMA_HORIZON = 0.05  # by default the moving average of the weights spans about this share of all training steps
RETRAIN_MIN_EVENTS = 1000  # `bert4rec retrain` trains nothing on fewer events (after filtering) than this
# A warm start's epochs, as a share of the recipe's (what a fresh model would train for), unless epochs are given.
# Chosen by benchmarks/warm_start.py: the shortest schedule measured that reached the fresh model's quality.
WARM_SCHEDULE_SHARE = 0.1


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
    patience: int | None = 10  # validations without improvement before stopping; None or 0: never stop early
    max_minutes: float | None = None  # stop after the epoch that crosses this training-time budget
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 elsewhere
    bucketing: bool = True  # batch sequences of similar length together and pad each batch to its longest
    loss: str = "full"  # full: exact softmax over all items (chunked when large); sampled: K popularity negatives
    negatives: int = 1024  # K for the sampled softmax
    exclude_seen: bool = True  # leave each target's window-mates out of its softmax, as evaluation does the history
    # Validate and keep a moving average of the weights, updated every step, with this decay. None: the decay whose
    # horizon is EMA_HORIZON of the schedule (see training.loop.ema_decay); 0: the raw weights.
    ema_decay: float | None = None
    # Checkpoint averaging: at the end, the kept weights of the last this many validations are averaged, and the
    # average is kept if it validates better than the best of the run. 0 or 1: off.
    average_last: int = 0
    holdout: str = "valid"  # see HOLDOUT_ITEMS
    shift_windows: bool = True  # move every window but each user's most recent by a random amount each epoch
    init_from: str | None = None  # a trained model folder to start from instead of random weights (warm_start.py)

    def __post_init__(self) -> None:
        if self.patience == 0:
            self.patience = None

    @property
    def validates(self) -> bool:
        return self.holdout == "valid"

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
        if self.average_last < 0:
            raise Bert4RecError("the number of validations to average must be 0 (off) or more")
        if self.average_last > 1 and self.holdout != "valid":
            raise Bert4RecError("averaging the last validations' weights needs validation (holdout 'valid')")
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
