"""Item vocabulary: PAD = 0, the catalogue's items = 1..N in ascending original id, MASK = N + 1.

External movie ids exist only at the edges: everything inside the model works with tokens.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bert4rec.errors import Bert4RecError
from bert4rec.files import read_versioned, versioned

PAD = 0
VERSION = 1


class ItemVocab:
    def __init__(self, item_ids: np.ndarray):
        ids = np.asarray(item_ids, dtype=np.int64)
        if ids.ndim != 1 or len(ids) == 0:
            raise Bert4RecError("a vocabulary needs at least one item id")
        if len(ids) > 1 and not (np.diff(ids) > 0).all():
            raise Bert4RecError("vocabulary item ids must be unique and ascending")
        self.item_ids = ids

    @classmethod
    def from_items(cls, item_ids: np.ndarray) -> ItemVocab:
        return cls(np.unique(np.asarray(item_ids, dtype=np.int64)))

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    @property
    def mask(self) -> int:
        return self.num_items + 1

    @property
    def size(self) -> int:
        """Number of token ids: PAD, the items and MASK."""
        return self.num_items + 2

    def known(self, item_ids: np.ndarray) -> np.ndarray:
        """Boolean mask: which external ids are in the vocabulary."""
        ids = np.asarray(item_ids, dtype=np.int64)
        pos = np.searchsorted(self.item_ids, ids)
        return (pos < self.num_items) & (self.item_ids[np.minimum(pos, self.num_items - 1)] == ids)

    def encode(self, item_ids: np.ndarray) -> np.ndarray:
        """External ids -> tokens 1..N; raises on an unknown id."""
        ids = np.asarray(item_ids, dtype=np.int64)
        known = self.known(ids)
        if not known.all():
            raise Bert4RecError(f"unknown item id {ids[~known][0]} (not in the model's vocabulary)")
        return (np.searchsorted(self.item_ids, ids) + 1).astype(np.int64)

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """Tokens 1..N -> external ids; raises on PAD, MASK or out-of-range tokens."""
        tokens = np.asarray(tokens, dtype=np.int64)
        if tokens.size and (tokens.min() < 1 or tokens.max() > self.num_items):
            raise Bert4RecError("cannot decode PAD, MASK or an out-of-range token to an item id")
        return self.item_ids[tokens - 1]

    def save(self, path: Path) -> None:
        body = {"pad": PAD, "mask": self.mask, "item_ids": self.item_ids.tolist()}
        Path(path).write_text(json.dumps(versioned("vocab", VERSION, body)))

    @classmethod
    def load(cls, path: Path) -> ItemVocab:
        data = read_versioned(path, "vocab", VERSION, "vocabulary file is missing")
        try:
            vocab = cls(np.asarray(data["item_ids"], dtype=np.int64))
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise Bert4RecError(f"{path}: malformed item_ids ({exc})") from None
        if data.get("mask") != vocab.mask or data.get("pad") != PAD:
            raise Bert4RecError(f"{path}: PAD/MASK ids do not match the item count")
        return vocab
