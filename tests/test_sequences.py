from __future__ import annotations

import numpy as np
import torch

from bert4rec.model import IGNORE
from bert4rec.sequences import (
    cloze_samples,
    cloze_types,
    crop,
    exclude_seen,
    inference_inputs,
    length_bucketed_batches,
    right_aligned,
    training_windows,
)
from bert4rec.token_types import (
    GAP_FIRST,
    GAP_UNKNOWN,
    LIKED_LEVEL,
    MASK_ANY,
    MASK_LIKED,
    MASK_NOT_LIKED,
    NUM_GAP_TYPES,
    UNRATED,
    gap_types,
    interaction_types,
    packed,
    rating_types,
    unpacked,
)
from bert4rec.vocab import PAD

MASK = 99


def test_right_aligned_pads_on_the_left_and_keeps_the_most_recent():
    tokens = np.array([1, 2, 3, 4, 5, 6, 7])
    rows = right_aligned(tokens, np.array([0, 3]), np.array([3, 7]), width=3)
    assert rows.tolist() == [[1, 2, 3], [5, 6, 7]]
    rows = right_aligned(tokens, np.array([0, 5]), np.array([2, 7]), width=4)
    assert rows.tolist() == [[0, 0, 1, 2], [0, 0, 6, 7]]


def test_training_windows_cover_training_items_once():
    offsets = np.array([0, 7, 9, 10])
    train_lengths = np.array([7, 2, 1])  # the last user has one item: no window
    starts, ends = training_windows(offsets, train_lengths, max_len=3)
    covered = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends, strict=True)])
    # windows are cut back from the most recent item: [4, 7), [1, 4); the leftover oldest item 0 alone is dropped
    assert sorted(covered.tolist()) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert len(covered) == len(set(covered.tolist()))
    assert (ends - starts).max() <= 3


def test_training_windows_drop_single_items_but_keep_pairs():
    starts, ends = training_windows(np.array([0, 4]), np.array([4]), max_len=3)
    assert list(zip(starts.tolist(), ends.tolist(), strict=True)) == [(1, 4)]


def test_shifted_windows_move_all_but_the_most_recent_window():
    offsets = np.array([0, 10, 12])
    train_lengths = np.array([10, 2])  # unshifted: user 0 [6, 10), [2, 6), [0, 2); user 1 [10, 12)
    starts, ends = training_windows(offsets, train_lengths, max_len=4, shifts=np.array([3, 3]))
    # the most recent windows stay; user 0's others move 3 towards the present, so the one behind overlaps it by
    # 3 and the oldest item drops out of this epoch
    assert list(zip(starts.tolist(), ends.tolist(), strict=True)) == [(6, 10), (5, 9), (1, 5), (10, 12)]
    unshifted = training_windows(offsets, train_lengths, max_len=4)
    zero = training_windows(offsets, train_lengths, max_len=4, shifts=np.zeros(2, dtype=np.int64))
    assert all(np.array_equal(u, z) for u, z in zip(unshifted, zero, strict=True))


def test_shifted_windows_keep_their_invariants():
    rng = np.random.default_rng(0)
    train_lengths = rng.integers(0, 60, size=300)
    offsets = np.concatenate([[0], np.cumsum(train_lengths)])
    shifts = rng.integers(0, 8, size=300)
    starts, ends = training_windows(offsets, train_lengths, max_len=8, shifts=shifts)
    assert ((ends - starts >= 2) & (ends - starts <= 8)).all()
    user = np.searchsorted(offsets, starts, side="right") - 1
    assert (ends <= offsets[user + 1]).all() and (starts >= offsets[user]).all()
    newest = np.flatnonzero(ends == offsets[user + 1])  # each user with two or more items has its newest window
    assert np.array_equal(user[newest], np.flatnonzero(train_lengths >= 2))
    assert (ends[newest] - starts[newest] == np.minimum(train_lengths[user[newest]], 8)).all()
    for u in np.flatnonzero(train_lengths >= 2):  # covered: everything but at most the shift's oldest items
        mine = user == u
        covered = set(np.concatenate([np.arange(s, e) for s, e in zip(starts[mine], ends[mine], strict=True)]))
        assert covered.issuperset(range(offsets[u] + shifts[u] + 1, offsets[u + 1])), u


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


def test_masks_are_fresh_each_call():
    rng = np.random.default_rng(2)
    windows = np.tile(np.arange(1, 31), (10, 1))
    a = cloze_samples(windows, MASK, 0.2, 0.0, rng).inputs
    b = cloze_samples(windows, MASK, 0.2, 0.0, rng).inputs
    assert not np.array_equal(a, b)


def test_length_buckets_cover_all_rows_once_and_group_similar_lengths():
    rng = np.random.default_rng(3)
    lengths = rng.integers(1, 200, size=1000)
    batches = length_bucketed_batches(lengths, 64, rng)
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    assert spread < 30  # random batches would span ~190


def test_crop_keeps_the_longest_row():
    rows = np.array([[0, 0, 1, 2], [0, 3, 4, 5]])
    assert crop(rows, np.array([2, 3]), multiple=1).tolist() == [[0, 1, 2], [3, 4, 5]]
    assert crop(rows, np.array([2, 3]), multiple=2).tolist() == rows.tolist()
    wide = np.zeros((1, 40), dtype=np.int64)
    assert crop(wide, np.array([9])).shape == (1, 16)


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


def test_rating_types():
    ratings = np.array([np.nan, 0.5, 1.0, 3.5, 4.0, 4.5, 5.0])
    assert rating_types(ratings).tolist() == [UNRATED, 1, 1, 3, 4, 4, 5]


def test_cloze_types_reveal_liked_only_on_masked_slots():
    rng = np.random.default_rng(0)
    types = np.tile(np.array([UNRATED, UNRATED, 5, 2, UNRATED, 4, 1, 3]), (500, 1))
    types[:, :2] = UNRATED  # padding
    windows = np.where(np.arange(8) < 2, PAD, 7)[None, :].repeat(500, 0)
    samples = cloze_samples(windows, 99, 0.4, 0.0, rng)
    out = cloze_types(types, samples.labels, rng, reveal=0.5, forget=0.1)
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


def test_gap_types_bucket_the_time_since_the_users_previous_interaction():
    offsets = np.array([0, 5, 5, 7])  # the middle user has no interactions
    timestamps = np.array([100, 100, 105, 200, 10**6, 50, 50 + 7 * 86400])
    assert gap_types(timestamps, offsets).tolist() == [GAP_FIRST, 2, 3, 5, 8, GAP_FIRST, 8]
    assert gap_types(timestamps, offsets).max() < NUM_GAP_TYPES


def test_packed_types_round_trip():
    rating, gap = np.array([0, 5, MASK_LIKED, 3]), np.array([GAP_UNKNOWN, GAP_FIRST, GAP_UNKNOWN, 8])
    assert [a.tolist() for a in unpacked(packed(rating, gap))] == [rating.tolist(), gap.tolist()]
    both = interaction_types(np.array([4.5, np.nan]), np.array([7, 7]), np.array([0, 2]))
    assert [a.tolist() for a in unpacked(both)] == [[4, UNRATED], [GAP_FIRST, 2]]


def test_cloze_types_hide_the_gap_of_masked_slots_and_of_some_rows():
    rng = np.random.default_rng(0)
    windows = np.full((2000, 6), 7)
    types = np.tile(packed(np.array([3, 5, 1, 4, 2, 5]), np.array([1, 2, 3, 4, 8, 2])), (2000, 1))
    samples = cloze_samples(windows, 99, 0.3, 0.0, rng)
    rating, gap = unpacked(cloze_types(types, samples.labels, rng, forget=0.1))
    masked = samples.labels != IGNORE
    assert (gap[masked] == GAP_UNKNOWN).all()
    untimed_rows = (gap == GAP_UNKNOWN).all(1)
    assert 0.07 < untimed_rows.mean() < 0.13  # whole histories without timestamps, as ad-hoc ones come
    timed = ~masked & ~untimed_rows[:, None]
    assert (gap[timed] == unpacked(types)[1][timed]).all()
    assert set(np.unique(rating[masked])) <= {MASK_ANY, MASK_LIKED, MASK_NOT_LIKED}
