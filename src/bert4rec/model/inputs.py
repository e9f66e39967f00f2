"""Model inputs from CSR sequences: cloze-masked training samples and history + [MASK] inference inputs.

Everything is built for all samples at once with numpy index arithmetic; nothing loops over users or items in
Python. Sequences are right-aligned: the most recent item sits in the last column, padding (0) on the left.
"""

from __future__ import annotations

from dataclasses import dataclass

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

IGNORE = -100  # the label of positions that are not predicted


def right_aligned(tokens: np.ndarray, starts: np.ndarray, ends: np.ndarray, width: int) -> np.ndarray:
    """(S, width) int64: row s holds the last ``width`` tokens of ``tokens[starts[s]:ends[s]]``, left-padded."""
    lengths = np.minimum(ends - starts, width)
    columns = np.arange(width)
    index = ends[:, None] - width + columns  # (S, width) positions in the flat token array
    valid = columns >= width - lengths[:, None]
    return np.where(valid, tokens[np.clip(index, 0, len(tokens) - 1)], PAD).astype(np.int64)


@dataclass
class ClozeSamples:
    inputs: np.ndarray  # (S, W) token ids with [MASK] at masked positions
    labels: np.ndarray  # (S, W) the hidden item at masked positions, IGNORE elsewhere
    lengths: np.ndarray  # (S,) non-padding tokens per row


def cloze_samples(windows: np.ndarray, mask_token: int, mask_prob: float, last_item_fraction: float,
                  rng: np.random.Generator) -> ClozeSamples:
    """Mask right-aligned windows for the cloze task; padding is never masked.

    Each item is masked with probability ``mask_prob``; a ``last_item_fraction`` of the rows instead have only
    their most recent item masked, as at recommendation time. Every row gets at least one masked item.
    """
    rows, width = windows.shape
    real = windows != PAD
    lengths = real.sum(1)
    masked = (rng.random((rows, width)) < mask_prob) & real
    last_only = rng.random(rows) < last_item_fraction
    masked[last_only] = False
    masked[last_only, -1] = True
    empty = ~masked.any(1)
    pick = width - 1 - (rng.random(rows) * lengths).astype(np.int64)  # a random real position per row
    masked[np.flatnonzero(empty), pick[empty]] = True
    return ClozeSamples(np.where(masked, mask_token, windows), np.where(masked, windows, IGNORE), lengths)


def cloze_types(types: np.ndarray, labels: np.ndarray, rng: np.random.Generator, reveal: float = 0.5,
                forget: float = 0.1) -> np.ndarray:
    """Packed token types (see ``token_types``) for masked windows.

    Rating part: a masked slot says, with probability ``reveal``, whether its hidden item was liked (so that
    recommendation can ask for "liked" items), else MASK_ANY; a ``forget`` share of the visible ratings is shown as
    UNRATED so that histories without ratings stay in distribution. Gap part: unknown on masked slots (the time of
    the next interaction is unknown at recommendation time), and on a ``forget`` share of the rows (histories
    without timestamps)."""
    rating, gap = unpacked(types)
    masked = labels != IGNORE
    liked = np.where(rating == UNRATED, MASK_ANY, np.where(rating >= LIKED_LEVEL, MASK_LIKED, MASK_NOT_LIKED))
    hidden = np.where(rng.random(types.shape) < reveal, liked, MASK_ANY)
    visible = np.where(rng.random(types.shape) < forget, UNRATED, rating)
    untimed = rng.random((len(types), 1)) < forget
    return packed(np.where(masked, hidden, visible), np.where(masked | untimed, GAP_UNKNOWN, gap))


def inference_inputs(tokens: np.ndarray, starts: np.ndarray, ends: np.ndarray, max_len: int,
                     mask_token: int) -> np.ndarray:
    """(B, ≤ max_len): each history's most recent ``max_len - 1`` items followed by [MASK]. The model fills
    the slot after the history; the last watched item is never overwritten. Given token types instead of tokens
    and a mask type (MASK_ANY or MASK_LIKED) instead of the mask token, builds the matching type rows."""
    history = right_aligned(tokens, starts, ends, max_len - 1)
    history = history[:, history.shape[1] - int(np.minimum(ends - starts, max_len - 1).max(initial=0)) :]
    return np.concatenate([history, np.full((len(history), 1), mask_token, dtype=np.int64)], axis=1)


def exclude_seen(scores: torch.Tensor, tokens: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> torch.Tensor:
    """Set to -inf, in place, the score of every item in each row's full history (not only the window)."""
    lengths = ends - starts
    rows = np.repeat(np.arange(len(starts)), lengths)
    flat = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths) + np.repeat(starts, lengths)
    items = tokens[flat] - 1
    scores[torch.from_numpy(rows).to(scores.device), torch.from_numpy(items).to(scores.device)] = float("-inf")
    return scores
