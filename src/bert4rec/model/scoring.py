"""Scoring histories in batches: history + [MASK] -> the model's scores for every item, with what each user has
already seen ruled out. Evaluation ranks targets with it, the Recommender picks the top k with it.

Shapes: B batch, W input width (≤ max_len), N items.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch

from bert4rec import progress
from bert4rec.data.token_types import MASK_ANY
from bert4rec.model.inputs import exclude_seen, inference_inputs
from bert4rec.model.modeling import Bert4Rec

# (B, W) inputs ending in [MASK], (B, W) packed token types or None -> (B, N) item scores
ScoreFn = Callable[[np.ndarray, np.ndarray | None], torch.Tensor]
BATCH_SIZE = 256


def model_scorer(model: Bert4Rec, device: str | torch.device = "cpu") -> ScoreFn:
    """A ScoreFn over ``model``; the token types reach it only if it reads them."""

    def score(inputs: np.ndarray, types: np.ndarray | None) -> torch.Tensor:
        types = torch.from_numpy(types).to(device) if types is not None and model.config.reads_types else None
        return model.score_last(torch.from_numpy(inputs).to(device), types).float()

    return score


def batched_scores(score_fn: ScoreFn, tokens: np.ndarray, starts: np.ndarray, ends: np.ndarray, max_len: int,
                   mask_token: int, types: np.ndarray | None = None, mask_type: int = MASK_ANY,
                   exclude_history: bool = True, batch_size: int = BATCH_SIZE,
                   label: str | None = None) -> Iterator[tuple[slice, torch.Tensor]]:
    """For each batch of the histories ``tokens[starts[r]:ends[r]]`` (and their ``types``): its rows and their
    (b, N) scores for the item after the history, each history's own items at -inf unless ``exclude_history``
    is off. ``mask_type`` is what the [MASK] slot asks a rating-aware model for. A ``label`` shows a progress
    bar."""
    batches = range(0, len(starts), batch_size)
    for i in progress.bar(batches, label is not None, desc=label, unit="batch", leave=False):
        rows = slice(i, i + batch_size)
        s, e = starts[rows], ends[rows]
        type_rows = None if types is None else inference_inputs(types, s, e, max_len, mask_type)
        scores = score_fn(inference_inputs(tokens, s, e, max_len, mask_token), type_rows)
        if exclude_history:
            exclude_seen(scores, tokens, s, e)
        yield rows, scores
