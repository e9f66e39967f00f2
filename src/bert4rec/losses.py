"""Cloze losses over the item catalogue, from the masked positions' hidden states.

- ``full_softmax``: exact cross-entropy over every item. Past a logits budget it runs in chunks of positions, each
  recomputed in the backward pass, so memory stays near ``LOGITS_BUDGET`` floats whatever the catalogue size
  (an 87k-item catalogue with 5k masked positions would otherwise hold ~1.8 GB of logits, twice over).
- ``SampledSoftmax``: the target against K negatives drawn by popularity, logits corrected by -log Q (Bengio &
  Senecal 2008; Yi et al., RecSys 2019) so that the estimate is not biased towards rare items; accidental hits
  (a negative equal to the target) are masked out.

Shapes: M masked positions, H hidden size, N items, K negatives.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

LOGITS_BUDGET = 1 << 26  # floats of (positions x items) logits alive at once in the exact loss: 256 MB in fp32
LOSSES = ("full", "sampled")


def _chunk_cross_entropy(hidden: torch.Tensor, items: torch.Tensor, bias: torch.Tensor,
                         targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy((hidden @ items.T + bias).float(), targets, reduction="sum")


def full_softmax(hidden: torch.Tensor, items: torch.Tensor, bias: torch.Tensor, targets: torch.Tensor,
                 budget: int = LOGITS_BUDGET) -> torch.Tensor:
    """Summed exact cross-entropy. hidden (M, H), items (N, H), bias (N,), targets (M,) in 0..N-1."""
    rows = max(1, budget // items.shape[0])
    if hidden.shape[0] <= rows:
        return _chunk_cross_entropy(hidden, items, bias, targets)
    return sum(checkpoint(_chunk_cross_entropy, hidden[i : i + rows], items, bias, targets[i : i + rows],
                          use_reentrant=False)
               for i in range(0, hidden.shape[0], rows))


class SampledSoftmax:
    """Summed sampled-softmax loss with K negatives shared by the batch, drawn from ``popularity`` (N,)."""

    def __init__(self, popularity: np.ndarray, num_negatives: int):
        weights = torch.as_tensor(np.asarray(popularity, dtype=np.float64) + 1.0)  # +1: every item can be drawn
        self.probs = (weights / weights.sum()).float()
        self.log_q = self.probs.log()
        self.num_negatives = num_negatives

    def __call__(self, hidden: torch.Tensor, items: torch.Tensor, bias: torch.Tensor,
                 targets: torch.Tensor) -> torch.Tensor:
        device = hidden.device
        negatives = torch.multinomial(self.probs, self.num_negatives, replacement=True).to(device)  # (K,)
        log_q = self.log_q.to(device)
        positive = (hidden * items[targets]).sum(-1) + bias[targets] - log_q[targets]  # (M,)
        negative = hidden @ items[negatives].T + bias[negatives] - log_q[negatives]  # (M, K)
        negative = negative.masked_fill(negatives[None, :] == targets[:, None], float("-inf"))
        logits = torch.cat([positive[:, None], negative], dim=1).float()  # (M, 1 + K): the target is column 0
        return F.cross_entropy(logits, torch.zeros_like(targets), reduction="sum")
