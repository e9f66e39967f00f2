from __future__ import annotations

import numpy as np

from bert4rec.training.windows import crop, length_bucketed_batches, training_windows

MASK = 99


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


