"""Cloze losses over the item catalogue, from the masked positions' hidden states.

- ``full_softmax``: exact cross-entropy over every item. Past a logits budget it runs in chunks of positions, each
  recomputed in the backward pass, so memory stays near ``LOGITS_BUDGET`` floats whatever the catalogue size
  (a catalogue of tens of thousands of items would otherwise hold gigabytes of logits, twice over).
- ``SampledSoftmax``: the target against K negatives drawn by popularity, logits corrected by -log Q (Bengio &
  Senecal 2008; Yi et al., RecSys 2019) so that the estimate is not biased towards rare items; accidental hits
  (a negative equal to the target) are masked out.

Both take an optional ``exclude`` (M, N) boolean: items left out of a position's softmax, as evaluation leaves the
user's history out of the ranking (see ``other_window_items``).

Shapes: B batch, L sequence length, M masked positions, H hidden size, N items, K negatives.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

LOGITS_BUDGET = 1 << 26  # floats of (positions x items) logits alive at once in the exact loss: 256 MB in fp32


def other_window_items(window: torch.Tensor, masked: torch.Tensor, num_items: int) -> torch.Tensor:
    """(B, L) the windows' item tokens (1..N, PAD 0; masked slots holding their hidden item) and (B, L) which
    slots are masked -> (M, N) bool: for each masked position, in row-major order, the items of its window other
    than its own target.

    In MovieLens nobody rates a movie twice, so these are never the answer; left in the softmax they are the
    negatives the model must push hardest, although they are the items most like the target and evaluation never
    ranks them."""
    seen = torch.zeros(window.shape[0], num_items + 1, dtype=torch.bool, device=window.device)
    seen.scatter_(1, window, True)  # (B, 1 + N): column 0 is PAD
    rows = masked.nonzero()[:, 0]  # (M,) the row of each masked position
    exclude = seen[rows, 1:]  # (M, N)
    exclude[torch.arange(len(rows), device=rows.device), window[masked] - 1] = False
    return exclude


def _chunk_cross_entropy(hidden: torch.Tensor, items: torch.Tensor, bias: torch.Tensor, targets: torch.Tensor,
                         exclude: torch.Tensor | None = None) -> torch.Tensor:
    logits = (hidden @ items.T + bias).float()  # (M, N)
    if exclude is not None:
        logits = logits.masked_fill(exclude, float("-inf"))
    return F.cross_entropy(logits, targets, reduction="sum")


def full_softmax(hidden: torch.Tensor, items: torch.Tensor, bias: torch.Tensor, targets: torch.Tensor,
                 exclude: torch.Tensor | None = None, budget: int = LOGITS_BUDGET) -> torch.Tensor:
    """Summed exact cross-entropy. hidden (M, H), items (N, H), bias (N,), targets (M,) in 0..N-1."""
    rows = max(1, budget // items.shape[0])
    if hidden.shape[0] <= rows:
        return _chunk_cross_entropy(hidden, items, bias, targets, exclude)
    return sum(checkpoint(_chunk_cross_entropy, hidden[i : i + rows], items, bias, targets[i : i + rows],
                          None if exclude is None else exclude[i : i + rows], use_reentrant=False)
               for i in range(0, hidden.shape[0], rows))


class SampledSoftmax:
    """Summed sampled-softmax loss with K negatives shared by the batch, drawn from ``popularity`` (N,)."""

    def __init__(self, popularity: np.ndarray, num_negatives: int):
        weights = torch.as_tensor(np.asarray(popularity, dtype=np.float64) + 1.0)  # +1: every item can be drawn
        self.probs = (weights / weights.sum()).float()
        self.log_q = self.probs.log()
        self.num_negatives = num_negatives

    def __call__(self, hidden: torch.Tensor, items: torch.Tensor, bias: torch.Tensor, targets: torch.Tensor,
                 exclude: torch.Tensor | None = None) -> torch.Tensor:
        device = hidden.device
        negatives = torch.multinomial(self.probs, self.num_negatives, replacement=True).to(device)  # (K,)
        log_q = self.log_q.to(device)
        positive = (hidden * items[targets]).sum(-1) + bias[targets] - log_q[targets]  # (M,)
        negative = hidden @ items[negatives].T + bias[negatives] - log_q[negatives]  # (M, K)
        hit = negatives[None, :] == targets[:, None]  # (M, K)
        if exclude is not None:
            hit |= exclude[:, negatives]
        negative = negative.masked_fill(hit, float("-inf"))
        logits = torch.cat([positive[:, None], negative], dim=1).float()  # (M, 1 + K): the target is column 0
        return F.cross_entropy(logits, torch.zeros_like(targets), reduction="sum")
