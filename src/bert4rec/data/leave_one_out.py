"""The leave-one-out split: each user's last interaction (in time order) is the test target, the one before it the
validation target, the rest train. A user with fewer than MIN_EVAL_LENGTH interactions only trains. Both
preparation engines (pandas here, DuckDB in ``outofcore``) label rows with these values."""

from __future__ import annotations

import numpy as np

TRAIN, VALID, TEST = 0, 1, 2
MIN_EVAL_LENGTH = 3  # a user needs a training item, a validation target and a test target


def split_labels(user_idx: np.ndarray) -> np.ndarray:
    """(n,) TRAIN / VALID / TEST of each row, for rows sorted by user then time (``user_idx`` (n,) per row)."""
    n = len(user_idx)
    starts = np.flatnonzero(np.r_[True, user_idx[1:] != user_idx[:-1]])
    lengths = np.diff(np.r_[starts, n])
    from_end = np.repeat(starts + lengths, lengths) - np.arange(n) - 1
    evaluable = np.repeat(lengths >= MIN_EVAL_LENGTH, lengths)
    split = np.full(n, TRAIN, dtype=np.int8)
    split[evaluable & (from_end == 1)] = VALID
    split[evaluable & (from_end == 0)] = TEST
    return split


def evaluable_users(lengths: np.ndarray) -> np.ndarray:
    """Indices of the users whose interaction counts ``lengths`` (U,) give them validation and test targets."""
    return np.flatnonzero(lengths >= MIN_EVAL_LENGTH)
