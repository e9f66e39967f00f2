"""Ranking metrics for one held-out target per user, from the target's 0-based rank (0 = ranked first).

Pure numpy functions; averaging is over users.
"""

from __future__ import annotations

import numpy as np
import torch

HR_KS = (1, 5, 10, 20)
NDCG_KS = (5, 10, 20)


def target_ranks(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B, N) scores and (B,) 0-based target columns -> (B,) number of items scored strictly above the target."""
    target_scores = scores.gather(1, targets[:, None])
    return (scores > target_scores).sum(1)


def hit_rate(ranks: np.ndarray, k: int) -> float:
    return float(np.mean(ranks < k))


def ndcg(ranks: np.ndarray, k: int) -> float:
    """With a single relevant item, IDCG = 1 and DCG = 1 / log2(rank + 2) inside the top k."""
    return float(np.mean(np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)))


def mrr(ranks: np.ndarray) -> float:
    return float(np.mean(1.0 / (ranks + 1.0)))


def summary(ranks: np.ndarray) -> dict[str, float]:
    ranks = np.asarray(ranks)
    out = {f"HR@{k}": hit_rate(ranks, k) for k in HR_KS}
    out |= {f"NDCG@{k}": ndcg(ranks, k) for k in NDCG_KS}
    out["MRR"] = mrr(ranks)
    return out
