"""What the catalogue says about each movie, as model inputs: its genres and its release year.

A feature-aware model (``--genre-aware``, ``--year-aware``) adds a genre part (the mean of its genres' embeddings)
and a year part (the embedding of its five-year bucket) to each movie's own embedding. Scoring uses the same sums,
so a movie with few ratings borrows from the movies that share its genres and years, and a movie added with a
retrain starts with both parts already learned.

Buckets have fixed edges, and a model keeps its genre vocabulary in its config, so a model and the grown catalogue
of its next warm start agree on what each column means.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

NO_GENRES = "(no genres listed)"  # MovieLens's word for a movie with none

YEAR_FIRST = 1900  # the first bucket's first year; earlier years join it
YEAR_WIDTH = 5
YEAR_BUCKETS = 28  # 0: no year known; 1: up to 1904, 2: 1905-1909, ..., 27: 2030 and later


def genre_names(genres: Iterable[str | None]) -> list[str]:
    """The genres listed in a catalogue's genre column ("Action|Comedy"), sorted (``(no genres listed)`` is not
    one)."""
    return sorted({name for listed in _listed(genres) for name in listed})


def genre_weights(genres: Iterable[str | None], names: list[str]) -> np.ndarray:
    """(movies, len(names)) float32: each movie's genres among ``names``, weighted to sum to 1 (all zeros for a
    movie with none of them), so its genre part is the mean of its genres' embeddings."""
    column = {name: i for i, name in enumerate(names)}
    listed_of = _listed(genres)
    weights = np.zeros((len(listed_of), len(names)), dtype=np.float32)
    for row, listed in enumerate(listed_of):
        known = [column[name] for name in listed if name in column]
        weights[row, known] = 1 / len(known) if known else 0
    return weights


def year_buckets(years: np.ndarray) -> np.ndarray:
    """(movies,) int64: the bucket of each movie's release year (float, NaN where unknown), 0 where unknown."""
    years = np.asarray(years, dtype=np.float64)
    buckets = 1 + np.clip((years - YEAR_FIRST) // YEAR_WIDTH, 0, YEAR_BUCKETS - 2)
    return np.where(np.isnan(years), 0, buckets).astype(np.int64)


def _listed(genres: Iterable[str | None]) -> list[list[str]]:
    return [[] if not isinstance(g, str) or g == NO_GENRES else [name for name in g.split("|") if name]
            for g in genres]
