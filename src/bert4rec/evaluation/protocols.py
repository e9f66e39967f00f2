"""Evaluation protocols: exact full ranking (the headline) and the paper's 100 popularity-sampled negatives.

Leave-one-out: for the validation split the model reads the training items and must rank the validation target;
for the test split it reads the training items plus the validation item and must rank the test target. Every
item of the input history is excluded from the ranking.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bert4rec.data.leave_one_out import TRAIN
from bert4rec.data.preprocess import PreparedDataset, Sequences, load_prepared
from bert4rec.data.token_types import LIKED_LEVEL, MASK_ANY, MASK_LIKED, rating_types
from bert4rec.errors import Bert4RecError
from bert4rec.evaluation import metrics
from bert4rec.evaluation.splits import HOLDOUT_ITEMS, SPLITS, TARGET_FROM_END, trained_on
from bert4rec.files import DATASET_DIR, METRICS_FILE, TRAIN_CONFIG_FILE, atomic_write_text
from bert4rec.model.device import pick_device
from bert4rec.model.modeling import Bert4Rec
from bert4rec.model.scoring import BATCH_SIZE, ScoreFn, batched_scores, model_scorer


def check_evaluable(model_dir: Path, split: str) -> None:
    """Refuse an unknown split, or one whose targets the model in ``model_dir`` trained on."""
    if split not in SPLITS:
        raise Bert4RecError(f"unknown split '{split}' (choose from {', '.join(SPLITS)})")
    path = Path(model_dir) / TRAIN_CONFIG_FILE
    try:  # an exported model has no training settings: it held out what training holds out by default
        holdout = json.loads(path.read_text()).get("holdout", "valid") if path.exists() else "valid"
    except (OSError, ValueError, AttributeError) as exc:
        raise Bert4RecError(f"{path}: unreadable training config ({exc})") from None
    if holdout not in HOLDOUT_ITEMS:
        raise Bert4RecError(f"{path}: unknown holdout '{holdout}'")
    if trained_on(holdout, split):
        raise Bert4RecError(f"{model_dir}: trained on the {split} targets (--holdout {holdout}), so its "
                            f"{split} figures would mean nothing")


@dataclass
class EvalSet:
    """The users and histories a protocol ranks, with each user's target item (0-based column)."""

    tokens: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    targets: np.ndarray
    types: np.ndarray | None = None  # (like tokens) packed token types, read by rating- or time-aware models only
    mask_type: int = MASK_ANY  # what the [MASK] slot asks a rating-aware model for: any movie, or a liked one

    @classmethod
    def for_split(cls, seqs: Sequences, users: np.ndarray, split: str) -> EvalSet:
        if split not in SPLITS:
            raise Bert4RecError(f"unknown split '{split}' (choose from {', '.join(SPLITS)})")
        ends = seqs.offsets[users + 1] - TARGET_FROM_END[split]
        return cls(seqs.tokens, seqs.offsets[users], ends, seqs.tokens[ends] - 1, seqs.token_types())

    def __len__(self) -> int:
        return len(self.starts)


def training_popularity(dataset: PreparedDataset) -> np.ndarray:
    """(N,) interaction count of each item in the training part (targets excluded)."""
    train = dataset.interactions["split"].to_numpy() == TRAIN
    items = dataset.interactions["item"].to_numpy()[train]
    return np.bincount(items - 1, minlength=dataset.vocab.num_items).astype(np.float64)


def popularity_scorer(popularity: np.ndarray) -> ScoreFn:
    row = torch.from_numpy(np.asarray(popularity, dtype=np.float32))

    def score(inputs: np.ndarray, types: np.ndarray | None) -> torch.Tensor:
        return row.expand(len(inputs), -1).clone()

    return score


def full_ranking_ranks(score_fn: ScoreFn, data: EvalSet, max_len: int, mask_token: int,
                       batch_size: int = BATCH_SIZE, progress: bool = False) -> metrics.Ranks:
    """Where each target ranks among all items not in the user's history."""
    ranks = []
    with torch.inference_mode():
        for rows, scores in batched_scores(score_fn, data.tokens, data.starts, data.ends, max_len, mask_token,
                                           data.types, data.mask_type, batch_size=batch_size,
                                           label="full ranking" if progress else None):
            targets = torch.from_numpy(data.targets[rows]).to(scores.device)
            ranks.append(_ranks(*metrics.target_ranks(scores, targets)))
    return metrics.Ranks.concat(ranks)


def _ranks(above: torch.Tensor, tied: torch.Tensor) -> metrics.Ranks:
    return metrics.Ranks(above.cpu().numpy(), tied.cpu().numpy())


# Draws of the whole catalogue by popularity, rejecting the seen, before a user's negatives come from the movies
# left to them instead: rejection is cheap for almost every user, and would never end for one who saw every
# popular movie.
REJECTION_ROUNDS = 8


def sample_negatives(data: EvalSet, popularity: np.ndarray, num: int, seed: int) -> np.ndarray:
    """(U, num) distinct items per user drawn by popularity, none in the history or equal to the target."""
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(popularity + 1e-12)
    cdf /= cdf[-1]
    allowed_count = len(popularity) - (data.ends - data.starts) - 1
    if (allowed_count < num).any():
        raise Bert4RecError(f"the catalogue is too small for {num} sampled negatives per user")
    out = np.empty((len(data), num), dtype=np.int64)
    for row in range(len(data)):
        banned = np.append(data.tokens[data.starts[row]:data.ends[row]] - 1, data.targets[row])
        chosen = np.empty(0, dtype=np.int64)
        for _ in range(REJECTION_ROUNDS):
            if len(chosen) >= num:
                break
            draw = np.minimum(np.searchsorted(cdf, rng.random(4 * num)), len(cdf) - 1)
            draw = draw[~np.isin(draw, banned)]
            _, first = np.unique(np.concatenate([chosen, draw]), return_index=True)
            chosen = np.concatenate([chosen, draw])[np.sort(first)]
        if len(chosen) < num:  # the history holds nearly every popular movie: draw the rest from what is left
            left = np.setdiff1d(np.arange(len(popularity)), np.concatenate([banned, chosen]))
            weight = popularity[left] + 1e-12
            chosen = np.concatenate([chosen, rng.choice(left, num - len(chosen), replace=False,
                                                        p=weight / weight.sum())])
        out[row] = chosen[:num]
    return out


def sampled_ranks(score_fn: ScoreFn, data: EvalSet, negatives: np.ndarray, max_len: int, mask_token: int,
                  batch_size: int = BATCH_SIZE) -> metrics.Ranks:
    """Where each target ranks among itself and its sampled negatives (the BERT4Rec paper's protocol)."""
    ranks = []
    with torch.inference_mode():
        for rows, scores in batched_scores(score_fn, data.tokens, data.starts, data.ends, max_len, mask_token,
                                           data.types, data.mask_type, exclude_history=False,
                                           batch_size=batch_size):
            target = scores.gather(1, torch.from_numpy(data.targets[rows])[:, None].to(scores.device))
            negative = scores.gather(1, torch.from_numpy(negatives[rows]).to(scores.device))
            ranks.append(_ranks((negative > target).sum(1), (negative == target).sum(1)))
    return metrics.Ranks.concat(ranks)


def evaluate_scorer(score_fn: ScoreFn, dataset: PreparedDataset, split: str, max_len: int,
                    sampled: bool = True, num_negatives: int = 100, seed: int = 0,
                    progress: bool = False) -> dict:
    """Metrics of one scorer on one split: ``{"full": {...}, "sampled_100": {...}}``."""
    data = EvalSet.for_split(dataset.sequences(), dataset.eval_users(), split)
    mask_token = dataset.vocab.mask
    result = {"full": metrics.summary(full_ranking_ranks(score_fn, data, max_len, mask_token, progress=progress))}
    if sampled:
        negatives = sample_negatives(data, training_popularity(dataset), num_negatives, seed)
        result[f"sampled_{num_negatives}"] = metrics.summary(
            sampled_ranks(score_fn, data, negatives, max_len, mask_token))
    result["users"] = len(data)
    return result


def evaluate_model(model: Bert4Rec, dataset: PreparedDataset, split: str = "test", device: str = "cpu",
                   sampled: bool = True, seed: int = 0, progress: bool = True) -> dict:
    """The model and the most-popular baseline under the same protocols."""
    model.eval()
    max_len = model.config.max_len
    return {
        "split": split,
        "model": evaluate_scorer(model_scorer(model, device), dataset, split, max_len, sampled, seed=seed,
                                 progress=progress),
        "most_popular": evaluate_scorer(popularity_scorer(training_popularity(dataset)), dataset, split, max_len,
                                        sampled, seed=seed),
    }


def evaluate_liked(model: Bert4Rec, dataset: PreparedDataset, split: str = "test", device: str = "cpu") -> dict:
    """For a rating-aware model: full-ranking metrics on the users whose target they went on to like (rated 4+),
    with the [MASK] slot asking for any movie and for a liked one."""
    seqs = dataset.sequences()
    data = EvalSet.for_split(seqs, dataset.eval_users(), split)
    liked = rating_types(seqs.ratings[data.ends]) >= LIKED_LEVEL
    data = EvalSet(data.tokens, data.starts[liked], data.ends[liked], data.targets[liked], data.types)
    scorer, max_len, mask = model_scorer(model.eval(), device), model.config.max_len, dataset.vocab.mask
    result = {"users": int(liked.sum())}
    for name, mask_type in (("ask_any", MASK_ANY), ("ask_liked", MASK_LIKED)):
        data.mask_type = mask_type
        result[name] = metrics.summary(full_ranking_ranks(scorer, data, max_len, mask))
    return result


def update_metrics_file(path: Path, split: str, result: dict) -> None:
    """Store ``result`` under ``split`` in metrics.json, keeping the other split's entry."""
    try:
        existing = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        existing = {}
    existing = existing if isinstance(existing, dict) else {}
    atomic_write_text(Path(path), json.dumps(existing | {split: result}, indent=2))


def evaluate_folder(model_dir: Path, split: str = "test", device: str = "auto", sampled: bool = True, seed: int = 0,
                    progress: bool = True) -> dict:
    """Evaluate the model in a model folder on its own dataset, as ``evaluate_model`` does, and store the result
    in its metrics.json. Refuses a split whose targets the model trained on."""
    model_dir = Path(model_dir)
    check_evaluable(model_dir, split)
    chosen = pick_device(device)
    model = Bert4Rec.load(model_dir, chosen)
    dataset = load_prepared(model_dir / DATASET_DIR)
    result = evaluate_model(model, dataset, split, str(chosen), sampled=sampled, seed=seed, progress=progress)
    update_metrics_file(model_dir / METRICS_FILE, split, result)
    return result
