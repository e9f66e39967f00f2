"""The model's architecture: every setting that shapes its weights, saved as ``config.json`` beside them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

from bert4rec.data.token_types import NUM_GAP_TYPES, NUM_RATING_TYPES, unpacked
from bert4rec.errors import Bert4RecError
from bert4rec.files import MODEL_CONFIG_FILE, atomic_write_text, read_versioned, versioned

if TYPE_CHECKING:
    import torch

VERSION = 1


@dataclass
class Bert4RecConfig:
    """Architecture. The defaults are the BERT4Rec paper's ML-1M setup, reading each interaction's rating beside
    the movie (``rating_aware=False`` for the paper's model); the ``paper`` recipe has the paper's exactly."""

    num_items: int
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    intermediate_size: int | None = None  # the feed-forward width; None: 4 x hidden_size, as in BERT
    dropout: float = 0.2
    # The paper also drops attention probabilities; that forces PyTorch's unfused attention path, much slower on a
    # CPU (benchmarks/speed.py measures it). Off by default; 0.2 is the paper's exact model.
    attention_dropout: float = 0.0
    max_len: int = 200
    rating_aware: bool = True  # read each interaction's rating (and a "liked" wish on the [MASK] slot)
    time_aware: bool = False  # read the time since the user's previous interaction
    genre_aware: bool = False  # add each movie's genres to its embedding (data/item_features.py)
    year_aware: bool = False  # add each movie's release-year bucket to its embedding
    genres: list[str] = field(default_factory=list)  # the genre vocabulary read; set from the data at training

    def __post_init__(self) -> None:
        if self.intermediate_size is None:
            self.intermediate_size = 4 * self.hidden_size
        self.genres = list(self.genres)

    @property
    def reads_features(self) -> bool:
        return self.genre_aware or self.year_aware

    @property
    def reads_types(self) -> bool:
        return self.rating_aware or self.time_aware

    @property
    def num_token_types(self) -> int:
        return self._rating_types * (NUM_GAP_TYPES if self.time_aware else 1)

    @property
    def _rating_types(self) -> int:
        return NUM_RATING_TYPES if self.rating_aware else 1

    def own_types(self, types: torch.Tensor) -> torch.Tensor:
        """Packed token types (``token_types``) -> this model's type ids: the parts it does not read are dropped."""
        rating, gap = unpacked(types)
        return (rating if self.rating_aware else 0) + (self._rating_types * gap if self.time_aware else 0)

    @property
    def vocab_size(self) -> int:
        return self.num_items + 2

    @property
    def mask_token(self) -> int:
        return self.num_items + 1

    def validate(self) -> None:
        if self.num_items < 1 or self.max_len < 2 or self.num_layers < 1:
            raise Bert4RecError(f"invalid model config: {self}")
        if self.hidden_size % self.num_heads:
            raise Bert4RecError(f"hidden size {self.hidden_size} is not divisible by {self.num_heads} heads")
        if self.genres and not self.genre_aware:
            raise Bert4RecError("a genre vocabulary is given, but the model is not genre-aware")

    def save(self, folder: Path) -> None:
        document = versioned("model", VERSION, asdict(self))
        atomic_write_text(Path(folder) / MODEL_CONFIG_FILE, json.dumps(document, indent=2), digest=True)

    @classmethod
    def load(cls, folder: Path) -> Bert4RecConfig:
        path = Path(folder) / MODEL_CONFIG_FILE
        data = read_versioned(path, "model", VERSION, "missing; not a bert4rec model folder")
        if "num_token_types" in data:  # written before time-aware models: types > 1 meant rating-aware
            data.setdefault("rating_aware", data.pop("num_token_types") > 1)
        data.setdefault("rating_aware", False)  # written before ratings were read
        names = {f.name for f in fields(cls)}
        try:
            config = cls(**{k: v for k, v in data.items() if k in names})
        except TypeError as exc:
            raise Bert4RecError(f"{path}: {exc}") from None
        config.validate()
        return config
