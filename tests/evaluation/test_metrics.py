from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bert4rec.evaluation import metrics


def test_target_ranks_count_items_strictly_above():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.3], [1.0, 2.0, 3.0, 4.0]])
    assert metrics.target_ranks(scores, torch.tensor([2, 3])).tolist() == [1, 0]
    scores[0, 1] = float("-inf")  # an excluded item no longer outranks the target
    assert metrics.target_ranks(scores, torch.tensor([2, 0])).tolist() == [0, 3]


def test_hand_computed_values():
    ranks = np.array([0, 1, 4, 9, 10, 50])
    assert metrics.hit_rate(ranks, 1) == pytest.approx(1 / 6)
    assert metrics.hit_rate(ranks, 5) == pytest.approx(3 / 6)
    assert metrics.hit_rate(ranks, 10) == pytest.approx(4 / 6)
    expected_ndcg10 = (1 + 1 / math.log2(3) + 1 / math.log2(6) + 1 / math.log2(11)) / 6
    assert metrics.ndcg(ranks, 10) == pytest.approx(expected_ndcg10)
    assert metrics.ndcg(ranks, 5) == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(6)) / 6)
    assert metrics.mrr(ranks) == pytest.approx((1 + 1 / 2 + 1 / 5 + 1 / 10 + 1 / 11 + 1 / 51) / 6)


def test_summary_keys_and_bounds():
    out = metrics.summary(np.array([0, 3, 100]))
    assert set(out) == {"HR@1", "HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20", "MRR"}
    assert out["HR@1"] == pytest.approx(1 / 3) and out["NDCG@20"] <= out["HR@20"]
