"""Catalogue losses: the chunked exact softmax equals the plain one; the sampled softmax's corrections."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from bert4rec.losses import SampledSoftmax, full_softmax


def problem(positions: int = 37, items: int = 50, hidden: int = 8, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(positions, hidden, generator=gen, requires_grad=True)
    w = torch.randn(items, hidden, generator=gen, requires_grad=True)
    b = torch.randn(items, generator=gen, requires_grad=True)
    t = torch.randint(0, items, (positions,), generator=gen)
    return h, w, b, t


@pytest.mark.parametrize("budget", [50 * 4, 50 * 7, 50 * 37, 10**9])  # chunks of 4, 7, all rows; no chunking
def test_chunked_softmax_is_exact_in_value_and_gradient(budget):
    h, w, b, t = problem()
    reference = F.cross_entropy(h @ w.T + b, t, reduction="sum")
    expected = torch.autograd.grad(reference, (h, w, b))
    loss = full_softmax(h, w, b, t, budget=budget)
    got = torch.autograd.grad(loss, (h, w, b))
    torch.testing.assert_close(loss, reference)
    for a, e in zip(got, expected, strict=True):
        torch.testing.assert_close(a, e)


def test_sampled_softmax_masks_accidental_hits():
    h, w, b, t = problem(items=5)
    t = torch.zeros_like(t)
    popularity = np.array([1e9, 0, 0, 0, 0])  # every negative drawn is item 0, the target itself
    loss = SampledSoftmax(popularity, num_negatives=16)(h, w, b, t)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)  # nothing left to compete with the target


def test_sampled_softmax_applies_the_log_q_correction():
    h, w, b, t = problem(positions=1, items=3)
    torch.manual_seed(0)
    sampler = SampledSoftmax(np.array([0.0, 1.0, 8.0]), num_negatives=4)
    loss = sampler(h, w, b, t)
    torch.manual_seed(0)
    negatives = torch.multinomial(sampler.probs, 4, replacement=True)
    logits = (h @ w.T + b - sampler.log_q)[0]
    kept = negatives[negatives != t[0]]
    expected = -logits[t[0]] + torch.logsumexp(torch.cat([logits[t[0]][None], logits[kept]]), 0)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(sampler.probs, torch.tensor([1.0, 2.0, 9.0]) / 12)
