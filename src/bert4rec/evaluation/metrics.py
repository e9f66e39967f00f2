"""Ranking metrics for one held-out target per user.

Ties are broken fairly: a target that ties with other items is equally likely to land at any of the tied places,
and every metric is its expectation under that uniformly random order (exact, no sampling). Counting only the
items strictly above would rank a tied target first, which flatters scorers with many equal scores, such as the
most-popular baseline. Averaging is over users.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

HR_KS = (1, 5, 10, 20)
NDCG_KS = (5, 10, 20)


@dataclass(frozen=True)
class Ranks:
    """Where each user's target landed: ``above`` items scored strictly higher, ``tied`` other items scored equal,
    so its 0-based rank is uniformly one of above, above + 1, ..., above + tied."""

    above: np.ndarray
    tied: np.ndarray | None = None  # None: no ties

    def __post_init__(self):
        above = np.asarray(self.above, dtype=np.int64)
        tied = np.zeros_like(above) if self.tied is None else np.asarray(self.tied, dtype=np.int64)
        if above.shape != tied.shape or above.ndim != 1:
            raise ValueError(f"above {above.shape} and tied {tied.shape} must be two equal-length vectors")
        object.__setattr__(self, "above", above)
        object.__setattr__(self, "tied", tied)

    def __len__(self) -> int:
        return len(self.above)

    @classmethod
    def concat(cls, parts: list[Ranks]) -> Ranks:
        return cls(np.concatenate([p.above for p in parts]), np.concatenate([p.tied for p in parts]))

    def mean_over_places(self, gain: np.ndarray) -> np.ndarray:
        """(U,) each target's expected ``gain[rank]``, where ``gain`` (R,) is 0 from rank R on."""
        cumulative = np.concatenate([[0.0], np.cumsum(gain)])  # cumulative[r] = gain of ranks 0 .. r-1
        first = np.minimum(self.above, len(gain))
        last = np.minimum(self.above + self.tied + 1, len(gain))
        return (cumulative[last] - cumulative[first]) / (self.tied + 1)


def target_ranks(scores: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, N) scores and (B,) 0-based target columns -> (B,) items scored strictly above each target, and (B,)
    other items scored equal to it."""
    target_scores = scores.gather(1, targets[:, None])
    return (scores > target_scores).sum(1), (scores == target_scores).sum(1) - 1


def hit_rate(ranks: Ranks, k: int) -> float:
    return float(np.mean(ranks.mean_over_places(np.ones(k))))


def ndcg(ranks: Ranks, k: int) -> float:
    """With a single relevant item, IDCG = 1 and DCG = 1 / log2(rank + 2) inside the top k."""
    return float(np.mean(ranks.mean_over_places(1.0 / np.log2(np.arange(k) + 2.0))))


def mrr(ranks: Ranks) -> float:
    deepest = int((ranks.above + ranks.tied).max(initial=0)) + 1
    return float(np.mean(ranks.mean_over_places(1.0 / np.arange(1, deepest + 1))))


def summary(ranks: Ranks) -> dict[str, float]:
    out = {f"HR@{k}": hit_rate(ranks, k) for k in HR_KS}
    out |= {f"NDCG@{k}": ndcg(ranks, k) for k in NDCG_KS}
    out["MRR"] = mrr(ranks)
    return out
