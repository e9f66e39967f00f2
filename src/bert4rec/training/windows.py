"""Training windows: each user's training items cut into windows of at most max_len, the batches they are
trained in, and the crop that pads a batch only to its longest row.

Sequences are right-aligned: the most recent item sits in the last column, padding (0) on the left.
"""

from __future__ import annotations

import numpy as np

from bert4rec.data.leave_one_out import MIN_EVAL_LENGTH
from bert4rec.data.preprocess import PreparedDataset
from bert4rec.errors import Bert4RecError
from bert4rec.evaluation.splits import HOLDOUT_ITEMS
from bert4rec.model.inputs import right_aligned


def training_windows(offsets: np.ndarray, train_lengths: np.ndarray, max_len: int,
                     shifts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cover each user's training items with windows of at most ``max_len``.

    Windows are cut back from the most recent item: [end - max_len, end), [end - 2 max_len, end - max_len), ...
    so every training interaction is in at most one window. A window of one item (the oldest leftover) teaches
    nothing about order and is dropped. Returns (starts, ends) into the flat token array.

    ``shifts`` (one per user, each in [0, max_len)) moves all of a user's windows but the most recent that far
    towards the present, as augmentation: redrawn every epoch, an older item then sits at a different position
    among different neighbours each time. The most recent window stays as recommending sees it; the one behind it
    overlaps it by the shift, and the oldest ``shift`` items may drop out of that epoch.
    """
    begin = offsets[:-1]
    end = begin + train_lengths
    counts = np.maximum(0, -(-train_lengths // max_len))  # ceil division
    user = np.repeat(np.arange(len(begin)), counts)
    k = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    ends = end[user] - k * max_len
    if shifts is not None:
        ends += np.where(k > 0, shifts[user], 0)
    starts = np.maximum(begin[user], ends - max_len)
    keep = ends - starts >= 2
    return starts[keep], ends[keep]


class TrainingWindows:
    """Right-aligned (S, max_len) windows over the items that ``holdout`` leaves to training, and for a rating- or
    time-aware model the matching packed token types; with ``shift``, drawn afresh every epoch (training_windows)."""

    def __init__(self, dataset: PreparedDataset, max_len: int, with_types: bool = False, holdout: str = "valid",
                 shift: bool = False):
        seqs = dataset.sequences()
        self.tokens, self.offsets, self.max_len, self.shift = seqs.tokens, seqs.offsets, max_len, shift
        self.types = seqs.token_types() if with_types else None
        lengths = seqs.lengths
        self.train_lengths = np.where(lengths >= MIN_EVAL_LENGTH, lengths - HOLDOUT_ITEMS[holdout], lengths)
        bounds = training_windows(self.offsets, self.train_lengths, max_len)
        # Unshifted: a shift only adds back the odd oldest window that would hold a single item unshifted, so the
        # schedule, sized from this count, runs out a few steps before an epoch of shifted windows does.
        self.count = len(bounds[0])
        if self.count == 0:
            raise Bert4RecError("no training sequences with at least two items")
        self._unshifted = None if shift else self._cut(*bounds)  # the same every epoch: cut once

    def item_counts(self, num_items: int) -> np.ndarray:
        """(N,) how often each item occurs among the items training reads (the holdout's targets left out)."""
        lengths = np.diff(self.offsets)
        position = np.arange(len(self.tokens)) - np.repeat(self.offsets[:-1], lengths)
        trained = position < np.repeat(self.train_lengths, lengths)
        return np.bincount(self.tokens[trained] - 1, minlength=num_items).astype(np.float64)

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
        if not self.shift:
            return self._unshifted
        shifts = rng.integers(0, self.max_len, len(self.train_lengths))
        return self._cut(*training_windows(self.offsets, self.train_lengths, self.max_len, shifts))

    def _cut(self, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        types = None if self.types is None else right_aligned(self.types, starts, ends, self.max_len)
        return right_aligned(self.tokens, starts, ends, self.max_len), types


def random_batches(count: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(count)
    return [order[i : i + batch_size] for i in range(0, count, batch_size)]


def length_bucketed_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Row indices grouped into batches of similar length (so short histories don't pay for long padding),
    in random order; ties broken randomly so that batches differ between epochs."""
    order = np.lexsort((rng.random(len(lengths)), lengths))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def crop(rows: np.ndarray, lengths: np.ndarray, multiple: int = 8) -> np.ndarray:
    """Drop the all-padding left columns of a right-aligned batch, keeping a width that is a multiple of
    ``multiple`` (fewer distinct shapes for the kernels to specialise on; the extra columns are padding)."""
    width = min(rows.shape[1], -(-max(1, int(lengths.max())) // multiple) * multiple)
    return rows[:, rows.shape[1] - width :]
