"""What ``prepare`` is asked to do: the filters and the column names of a custom table. Plain dataclasses, the one
home of their defaults (the CLI reads them too)."""

from __future__ import annotations

from dataclasses import dataclass

from bert4rec.errors import DataError

DEFAULT_MEMORY_LIMIT = "4GB"  # DuckDB's buffers in the out-of-core prepare; the rest spills to disk


@dataclass(frozen=True)
class Columns:
    """Column names of a user-supplied ratings table (the notebook's layout by default)."""

    user: str = "userId"
    item: str = "movieId"
    rating: str | None = "rating"
    timestamp: str = "timestamp"
    title: str = "title"
    genres: str = "genres"


@dataclass(frozen=True)
class PrepareParams:
    min_rating: float | None = None  # None keeps every rating, as the BERT4Rec paper does
    min_user_interactions: int = 5
    min_item_interactions: int = 5
    sample_users: float | None = None  # fraction of users kept, whole users at a time
    seed: int = 0

    @property
    def samples_users(self) -> bool:
        return self.sample_users is not None and self.sample_users < 1

    def validate(self) -> None:
        if self.min_user_interactions < 1 or self.min_item_interactions < 1:
            raise DataError("minimum interactions per user and per item must be at least 1")
        if self.sample_users is not None and not 0 < self.sample_users <= 1:
            raise DataError(f"--sample-users must be in (0, 1], got {self.sample_users}")
