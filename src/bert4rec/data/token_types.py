"""Token types: what a rating-aware and/or time-aware model reads beside each movie.

A type id packs two parts, ``rating + NUM_RATING_TYPES * gap``, so that one (B, L) array carries both through
batching, evaluation and serving. Every producer writes both parts; each model keeps the parts it was trained to
read (``Bert4RecConfig.own_types``) and embeds them the way BERT embeds a segment, added to the item embedding.
"""

from __future__ import annotations

import numpy as np

# Rating part. The notebook this project grew from folded (rating, movie) into one token; a type keeps the vocabulary.
UNRATED = 0  # padding, or an interaction whose rating is unknown (ad-hoc histories often come without ratings)
# 1..5: the rating's star level (half stars round down; 0.5 counts as 1)
MASK_ANY, MASK_LIKED, MASK_NOT_LIKED = 6, 7, 8  # the [MASK] slot: rating unknown / liked / not liked
NUM_RATING_TYPES = 9
LIKED_LEVEL = 4  # liked means rated 4 stars or more

# Gap part: how long after the same user's previous interaction this one came, on a log-like scale. MovieLens users
# rate in sittings (many consecutive ratings share a second), so the gaps say which items belong to the current sitting.
GAP_UNKNOWN = 0  # padding, the [MASK] slot, or a history without timestamps
GAP_FIRST = 1  # the user's first interaction
GAP_EDGES_SECONDS = (1, 11, 61, 601, 3601, 86401)  # 2: same second, 3: ≤ 10 s, 4: ≤ 1 min, ... 8: over a day
NUM_GAP_TYPES = 3 + len(GAP_EDGES_SECONDS)


def rating_types(ratings: np.ndarray) -> np.ndarray:
    """(T,) ratings (NaN: unknown) -> (T,) rating parts UNRATED or 1..5."""
    ratings = np.asarray(ratings, dtype=np.float64)
    return np.where(np.isfinite(ratings), np.clip(np.floor(np.nan_to_num(ratings)), 1, 5), UNRATED).astype(np.int64)


def gap_types(timestamps: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(T,) timestamps (seconds) of CSR sequences, each user's in time order -> (T,) gap parts."""
    gaps = np.diff(np.asarray(timestamps, dtype=np.int64), prepend=0)
    types = np.digitize(gaps, GAP_EDGES_SECONDS) + 2
    firsts = offsets[:-1][offsets[:-1] < offsets[1:]]  # users with no interactions have no first one
    types[firsts] = GAP_FIRST
    return types.astype(np.int64)


def packed(rating: np.ndarray, gap: np.ndarray) -> np.ndarray:
    return rating + NUM_RATING_TYPES * gap


def unpacked(types: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Packed types -> (rating part, gap part); numpy arrays or torch tensors."""
    return types % NUM_RATING_TYPES, types // NUM_RATING_TYPES


def interaction_types(ratings: np.ndarray, timestamps: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(T,) packed types of CSR sequences with known ratings (NaN: unknown) and timestamps."""
    return packed(rating_types(ratings), gap_types(timestamps, offsets))


def mask_type(liked: bool | np.ndarray) -> np.ndarray:
    """The [MASK] slot's type (elementwise): asking for a liked movie, or for any; its gap is unknown."""
    return np.where(liked, MASK_LIKED, MASK_ANY)
