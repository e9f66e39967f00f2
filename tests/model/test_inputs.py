from __future__ import annotations

import numpy as np
import torch

from bert4rec.data.token_types import (
    GAP_UNKNOWN,
    LIKED_LEVEL,
    MASK_ANY,
    MASK_LIKED,
    MASK_NOT_LIKED,
    UNRATED,
    packed,
    unpacked,
)
from bert4rec.data.vocab import PAD
from bert4rec.model.inputs import (
    IGNORE,
    cloze_samples,
    cloze_types,
    exclude_seen,
    inference_inputs,
    right_aligned,
)

MASK = 99


def test_right_aligned_pads_on_the_left_and_keeps_the_most_recent():
    tokens = np.array([1, 2, 3, 4, 5, 6, 7])
    rows = right_aligned(tokens, np.array([0, 3]), np.array([3, 7]), width=3)
    assert rows.tolist() == [[1, 2, 3], [5, 6, 7]]
    rows = right_aligned(tokens, np.array([0, 5]), np.array([2, 7]), width=4)
    assert rows.tolist() == [[0, 0, 1, 2], [0, 0, 6, 7]]


def test_cloze_masking_invariants():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 50, size=2000)
    windows = np.zeros((2000, 50), dtype=np.int64)
    for row, n in enumerate(lengths):
        windows[row, 50 - n :] = rng.integers(1, 90, size=n)
    samples = cloze_samples(windows, MASK, mask_prob=0.2, last_item_fraction=0.0, rng=rng)
    masked = samples.inputs == MASK
    real = windows != 0
    assert not (masked & ~real).any(), "padding is never masked"
    assert (samples.labels[masked] == windows[masked]).all()
    assert (samples.labels[~masked] == IGNORE).all()
    assert (samples.inputs[~masked] == windows[~masked]).all()
    assert masked.any(1).all(), "every row predicts at least one item"
    rate = masked.sum() / real.sum()
    assert 0.19 < rate < 0.23  # 0.2, plus rows forced to one mask
    assert (samples.lengths == lengths).all()
    assert not (windows == MASK).any(), "[MASK] is not an item id"


def test_last_item_samples_mask_only_the_most_recent_item():
    rng = np.random.default_rng(1)
    windows = np.tile(np.arange(1, 21), (500, 1))
    samples = cloze_samples(windows, MASK, mask_prob=0.5, last_item_fraction=0.3, rng=rng)
    last_only = (samples.inputs == MASK).sum(1) == 1
    last_only &= samples.inputs[:, -1] == MASK
    assert 0.25 < last_only.mean() < 0.4


def test_a_row_left_without_a_mask_gets_one_at_a_random_real_position():
    rng = np.random.default_rng(3)
    windows = np.zeros((2000, 30), dtype=np.int64)
    windows[:, 10:] = 7  # 20 real items after 10 of padding
    samples = cloze_samples(windows, MASK, mask_prob=0.0, last_item_fraction=0.0, rng=rng)
    rows, columns = np.nonzero(samples.inputs == MASK)
    assert rows.tolist() == list(range(2000))  # exactly one each
    assert set(columns.tolist()) == set(range(10, 30))  # every real position, never padding
    assert 17 < columns.mean() < 22  # evenly: 19.5 on average


def test_masks_are_fresh_each_call():
    rng = np.random.default_rng(2)
    windows = np.tile(np.arange(1, 31), (10, 1))
    a = cloze_samples(windows, MASK, 0.2, 0.0, rng).inputs
    b = cloze_samples(windows, MASK, 0.2, 0.0, rng).inputs
    assert not np.array_equal(a, b)


def test_inference_inputs_append_mask_after_history():
    tokens = np.array([1, 2, 3, 4, 5, 6])
    inputs = inference_inputs(tokens, np.array([0, 4]), np.array([4, 6]), max_len=4, mask_token=MASK)
    # max_len 4 -> last 3 history items, then [MASK]; the last watched item is kept, not overwritten
    assert inputs.tolist() == [[2, 3, 4, MASK], [0, 5, 6, MASK]]


def test_exclude_seen_uses_the_whole_history():
    tokens = np.array([1, 2, 3, 4, 5])
    scores = torch.zeros(2, 6)
    exclude_seen(scores, tokens, np.array([0, 3]), np.array([3, 5]))
    assert torch.isinf(scores[0]).tolist() == [True, True, True, False, False, False]
    assert torch.isinf(scores[1]).tolist() == [False, False, False, True, True, False]


def test_cloze_types_reveal_liked_only_on_masked_slots():
    rng = np.random.default_rng(0)
    types = np.tile(np.array([UNRATED, UNRATED, 5, 2, UNRATED, 4, 1, 3]), (500, 1))
    types[:, :2] = UNRATED  # padding
    windows = np.where(np.arange(8) < 2, PAD, 7)[None, :].repeat(500, 0)
    samples = cloze_samples(windows, 99, 0.4, 0.0, rng)
    out = cloze_types(types, samples.labels, rng)  # the defaults, as training calls it: reveal 0.5, forget 0.1
    masked = samples.labels != IGNORE
    assert set(np.unique(out[masked])) <= {MASK_ANY, MASK_LIKED, MASK_NOT_LIKED}
    assert (out[~masked] < MASK_ANY).all()
    assert (out[:, :2] == UNRATED).all()  # padding never gets a type
    liked_slot = masked & (types >= LIKED_LEVEL)
    assert set(np.unique(out[liked_slot])) == {MASK_ANY, MASK_LIKED}  # revealed about half the time
    assert 0.4 < np.mean(out[liked_slot] == MASK_LIKED) < 0.6
    assert set(np.unique(out[masked & (types < LIKED_LEVEL) & (types != UNRATED)])) == {MASK_ANY, MASK_NOT_LIKED}
    assert (out[masked & (types == UNRATED)] == MASK_ANY).all()  # an unknown rating is never revealed
    forgotten = ~masked & (types != UNRATED) & (out == UNRATED)
    assert 0.05 < forgotten.sum() / (~masked & (types != UNRATED)).sum() < 0.15


def test_cloze_types_hide_the_gap_of_masked_slots_and_of_some_rows():
    rng = np.random.default_rng(0)
    windows = np.full((2000, 6), 7)
    types = np.tile(packed(np.array([3, 5, 1, 4, 2, 5]), np.array([1, 2, 3, 4, 8, 2])), (2000, 1))
    samples = cloze_samples(windows, 99, 0.3, 0.0, rng)
    rating, gap = unpacked(cloze_types(types, samples.labels, rng))  # the default forget, 0.1
    masked = samples.labels != IGNORE
    assert (gap[masked] == GAP_UNKNOWN).all()
    untimed_rows = (gap == GAP_UNKNOWN).all(1)
    assert 0.07 < untimed_rows.mean() < 0.13  # whole histories without timestamps, as ad-hoc ones come
    timed = ~masked & ~untimed_rows[:, None]
    assert (gap[timed] == unpacked(types)[1][timed]).all()
    assert set(np.unique(rating[masked])) <= {MASK_ANY, MASK_LIKED, MASK_NOT_LIKED}
