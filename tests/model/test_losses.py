"""Catalogue losses: the chunked exact softmax equals the plain one; the sampled softmax's corrections; items left
out of a softmax."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from bert4rec.model import losses
from bert4rec.model.losses import SampledSoftmax, full_softmax, other_window_items


def problem(positions: int = 37, items: int = 50, hidden: int = 8, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(positions, hidden, generator=gen, requires_grad=True)
    w = torch.randn(items, hidden, generator=gen, requires_grad=True)
    b = torch.randn(items, generator=gen, requires_grad=True)
    t = torch.randint(0, items, (positions,), generator=gen)
    return h, w, b, t


# 37 positions over 50 items: chunks of 4 rows (10 chunks), of 7 (6), of 36 (2, the last of one row); no chunking
@pytest.mark.parametrize(("budget", "chunks"), [(50 * 4, 10), (50 * 7, 6), (50 * 36, 2), (10**9, 0)])
def test_chunked_softmax_is_exact_in_value_and_gradient(budget, chunks, monkeypatch):
    h, w, b, t = problem()
    reference = F.cross_entropy(h @ w.T + b, t, reduction="sum")
    expected = torch.autograd.grad(reference, (h, w, b))
    calls = []
    real_checkpoint = losses.checkpoint
    monkeypatch.setattr(losses, "checkpoint", lambda *a, **kw: calls.append(len(a[1])) or real_checkpoint(*a, **kw))
    loss = full_softmax(h, w, b, t, budget=budget)
    assert len(calls) == chunks and sum(calls) == (37 if chunks else 0)
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


def test_other_window_items_are_the_windows_items_but_the_target():
    window = torch.tensor([[0, 3, 1, 2], [4, 1, 2, 5]])  # item tokens 1..6, PAD 0; masked slots hold their item
    masked = torch.tensor([[False, True, False, True], [True, False, False, False]])
    exclude = other_window_items(window, masked, num_items=6)
    columns = [sorted((torch.nonzero(row)[:, 0] + 1).tolist()) for row in exclude]  # back to item tokens
    assert columns == [[1, 2], [1, 3], [1, 2, 5]]  # targets 3, 2 (row 0) and 4 (row 1) stay in


@pytest.mark.parametrize("budget", [50 * 4, 10**9])  # chunked and not
def test_excluded_items_leave_the_softmax_and_get_no_gradient(budget):
    h, w, b, t = problem()
    gen = torch.Generator().manual_seed(1)
    exclude = torch.rand(len(t), 50, generator=gen) < 0.3
    exclude[torch.arange(len(t)), t] = False
    exclude[:, 49] = True  # item 49 is left out everywhere
    reference = F.cross_entropy((h @ w.T + b).masked_fill(exclude, float("-inf")), t, reduction="sum")
    loss = full_softmax(h, w, b, t, exclude, budget=budget)
    torch.testing.assert_close(loss, reference)
    grad_w, grad_b = torch.autograd.grad(loss, (w, b))
    assert grad_b[49] == 0 and torch.all(grad_w[49] == 0)
    assert loss < full_softmax(h, w, b, t)  # a smaller normaliser


def test_sampled_softmax_drops_excluded_negatives():
    h, w, b, t = problem(items=5)
    t = torch.zeros_like(t)
    exclude = torch.ones(len(t), 5, dtype=torch.bool)
    exclude[:, 0] = False  # everything but the target is left out
    loss = SampledSoftmax(np.ones(5), num_negatives=16)(h, w, b, t, exclude)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
