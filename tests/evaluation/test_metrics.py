from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from bert4rec.evaluation import metrics
from bert4rec.evaluation.metrics import Ranks


def test_target_ranks_count_items_above_and_tied():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.3], [1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 1.0, 2.0]])
    above, tied = metrics.target_ranks(scores, torch.tensor([2, 3, 0]))
    assert above.tolist() == [1, 0, 0] and tied.tolist() == [0, 0, 2]
    scores[0, 1] = float("-inf")  # an excluded item no longer outranks the target
    above, tied = metrics.target_ranks(scores, torch.tensor([2, 0, 2]))
    assert above.tolist() == [0, 3, 3] and tied.tolist() == [0, 0, 0]


def test_hand_computed_values_without_ties():
    ranks = Ranks(np.array([0, 1, 4, 9, 10, 50]))
    assert metrics.hit_rate(ranks, 1) == pytest.approx(1 / 6)
    assert metrics.hit_rate(ranks, 5) == pytest.approx(3 / 6)
    assert metrics.hit_rate(ranks, 10) == pytest.approx(4 / 6)
    expected_ndcg10 = (1 + 1 / math.log2(3) + 1 / math.log2(6) + 1 / math.log2(11)) / 6
    assert metrics.ndcg(ranks, 10) == pytest.approx(expected_ndcg10)
    assert metrics.ndcg(ranks, 5) == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(6)) / 6)
    assert metrics.mrr(ranks) == pytest.approx((1 + 1 / 2 + 1 / 5 + 1 / 10 + 1 / 11 + 1 / 51) / 6)


def test_a_tie_counts_as_the_average_over_the_tied_places():
    # One target with 8 items above it and 3 tied: rank 8, 9, 10 or 11, each with probability 1/4.
    ranks = Ranks(np.array([8]), np.array([3]))
    assert metrics.hit_rate(ranks, 10) == pytest.approx(2 / 4)
    assert metrics.hit_rate(ranks, 9) == pytest.approx(1 / 4)
    assert metrics.hit_rate(ranks, 8) == 0.0
    assert metrics.hit_rate(ranks, 20) == 1.0
    assert metrics.ndcg(ranks, 10) == pytest.approx((1 / math.log2(10) + 1 / math.log2(11)) / 4)
    assert metrics.mrr(ranks) == pytest.approx((1 / 9 + 1 / 10 + 1 / 11 + 1 / 12) / 4)


def test_a_target_tied_with_everything_is_not_ranked_first():
    scores = torch.zeros(1, 1000)  # a scorer that cannot tell the items apart: HR@10 is 10 in 1000, not 1
    ranks = Ranks(*(t.numpy() for t in metrics.target_ranks(scores, torch.tensor([0]))))
    assert metrics.hit_rate(ranks, 10) == pytest.approx(0.01)
    assert metrics.summary(ranks)["HR@1"] == pytest.approx(0.001)


def test_expectation_matches_every_order_of_the_tied_items():
    rng = np.random.default_rng(0)
    scores = torch.from_numpy(rng.integers(0, 4, size=(30, 7)).astype(np.float32))  # many ties
    targets = torch.from_numpy(rng.integers(0, 7, size=30))
    ranks = Ranks(*(t.numpy() for t in metrics.target_ranks(scores, targets)))
    brute = []  # each user's metrics averaged over every order of its items that respects the scores
    for row, target in zip(scores.numpy(), targets.numpy(), strict=True):
        places = [order.index(target) for order in itertools.permutations(range(7))
                  if all(row[a] >= row[b] for a, b in itertools.pairwise(order))]
        brute.append(metrics.summary(Ranks(np.array(places))))
    for name, value in metrics.summary(ranks).items():
        assert value == pytest.approx(np.mean([b[name] for b in brute])), name


def test_summary_keys_and_bounds():
    out = metrics.summary(Ranks(np.array([0, 3, 100]), np.array([0, 2, 5])))
    assert set(out) == {"HR@1", "HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20", "MRR"}
    assert out["HR@1"] == pytest.approx(1 / 3) and out["NDCG@20"] <= out["HR@20"]


def test_ranks_hold_integer_vectors_whatever_they_are_given():
    ranks = Ranks([0.0, 3.0], [1.0, 0.0])
    assert ranks.above.dtype == np.int64 and ranks.tied.dtype == np.int64
    assert metrics.hit_rate(ranks, 1) == pytest.approx(0.25)  # usable as indices
    assert ranks.above.tolist() == [0, 3] and ranks.tied.tolist() == [1, 0]
    assert Ranks([2]).tied.tolist() == [0] and len(Ranks.concat([ranks, Ranks([5])])) == 3


def test_ranks_refuse_mismatched_vectors():
    with pytest.raises(ValueError, match="equal-length"):
        Ranks(np.array([0, 1]), np.array([0]))
