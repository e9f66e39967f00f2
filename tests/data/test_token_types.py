from __future__ import annotations

import numpy as np

from bert4rec.data.token_types import (
    GAP_FIRST,
    GAP_UNKNOWN,
    MASK_LIKED,
    NUM_GAP_TYPES,
    UNRATED,
    gap_types,
    interaction_types,
    packed,
    rating_types,
    unpacked,
)

MASK = 99


def test_rating_types():
    ratings = np.array([np.nan, 0.5, 1.0, 3.5, 4.0, 4.5, 5.0])
    assert rating_types(ratings).tolist() == [UNRATED, 1, 1, 3, 4, 4, 5]


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


