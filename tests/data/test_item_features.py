"""What a feature-aware model reads of the catalogue: genre weights and year buckets."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bert4rec.data.item_features import NO_GENRES, YEAR_BUCKETS, genre_names, genre_weights, year_buckets

GENRES = pd.Series(["Comedy|Drama", NO_GENRES, None, "Drama", "Horror|Comedy|Musical"], dtype="string")


def test_genre_names_are_the_sorted_genres_listed_without_the_word_for_none():
    assert genre_names(GENRES) == ["Comedy", "Drama", "Horror", "Musical"]


def test_each_movies_genre_weights_average_its_genres_and_ignore_genres_outside_the_vocabulary():
    weights = genre_weights(GENRES, ["Comedy", "Drama", "Horror"])  # Musical is not read
    np.testing.assert_allclose(weights, [[0.5, 0.5, 0], [0, 0, 0], [0, 0, 0], [0, 1, 0], [0.5, 0, 0.5]])
    assert weights.dtype == np.float32


def test_years_fall_in_five_year_buckets_with_fixed_edges_and_zero_for_unknown():
    years = np.array([np.nan, 1850, 1900, 1904, 1905, 1995, 1999, 2000, 2029, 2030, 2500])
    assert year_buckets(years).tolist() == [0, 1, 1, 1, 2, 20, 20, 21, 26, 27, 27]
    assert year_buckets(years).max() == YEAR_BUCKETS - 1
