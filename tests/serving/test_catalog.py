from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bert4rec.errors import AmbiguousTitleError, TitleNotFoundError, UnknownItemError
from bert4rec.serving.catalog import Catalog, normalize

TITLES = ["Toy Story (1995)", "Toy Story 2 (1999)", "Matrix, The (1999)", "Matrix Reloaded, The (2003)",
          "Heat (1995)", "Heat, The (2013)", "Hamlet (1990)", "Hamlet (1996)",
          "City of Lost Children, The (Cité des enfants perdus, La) (1995)", "Shawshank Redemption, The (1994)"]


@pytest.fixture
def catalog() -> Catalog:
    movies = pd.DataFrame({"item_id": np.arange(1, len(TITLES) + 1) * 10, "title": TITLES,
                           "year": pd.array([int(t[-5:-1]) for t in TITLES], "Int64"),
                           "genres": ["Animation"] * len(TITLES)})
    return Catalog(movies, popularity=np.arange(len(TITLES), 0, -1))


def title_of(catalog, query):
    return catalog.movies["title"].iloc[catalog.match(query)]


@pytest.mark.parametrize(
    ("query", "title"),
    [
        ("toy story", "Toy Story (1995)"),  # exact beats the sequel that contains it
        ("TOY STORY 2", "Toy Story 2 (1999)"),
        ("matrix", "Matrix, The (1999)"),  # article moved by MovieLens
        ("The Matrix", "Matrix, The (1999)"),
        ("matrix 1999", "Matrix, The (1999)"),
        ("heat", "Heat (1995)"),  # written exactly beats exact-up-to-articles
        ("the heat", "Heat, The (2013)"),
        ("hamlet (1996)", "Hamlet (1996)"),
        ("cite des enfants perdus", "City of Lost Children, The (Cité des enfants perdus, La) (1995)"),
        ("shawshank", "Shawshank Redemption, The (1994)"),  # a unique prefix
        ("toy stroy", "Toy Story (1995)"),  # a typo
    ],
)
def test_match(catalog, query, title):
    assert title_of(catalog, query) == title


def test_ambiguity_is_reported_not_guessed(catalog):
    with pytest.raises(AmbiguousTitleError) as info:
        catalog.match("hamlet")
    assert {c["title"] for c in info.value.candidates} == {"Hamlet (1990)", "Hamlet (1996)"}
    assert "add the year" in str(info.value)


def test_not_found(catalog):
    with pytest.raises(TitleNotFoundError):
        catalog.match("qwertyuiop")
    with pytest.raises(TitleNotFoundError):
        catalog.match("   ")


def test_search_ranks_exact_then_prefix_then_popular(catalog):
    results = [m["title"] for m in catalog.search("toy", limit=5)]
    assert results == ["Toy Story (1995)", "Toy Story 2 (1999)"]
    assert [m["title"] for m in catalog.search("matrix")][:2] == ["Matrix, The (1999)", "Matrix Reloaded, The (2003)"]
    assert catalog.search("zzzz") == []


def test_ids_are_found_in_a_catalogue_in_any_order():
    movies = pd.DataFrame({"item_id": [50, 3, 900, 12], "title": ["A (2000)", "B (2001)", "C (2002)", "D (2003)"],
                           "year": pd.array([2000, 2001, 2002, 2003], "Int64"), "genres": ["Drama"] * 4})
    shuffled = Catalog(movies, popularity=np.ones(4))
    assert shuffled.find_rows(np.array([900, 3, 4, 12, 50, 1000, 0])).tolist() == [2, 1, -1, 3, 0, -1, -1]
    assert shuffled.find_rows(np.array([], dtype=np.int64)).tolist() == []
    empty = Catalog(movies.iloc[:0], popularity=np.ones(0))
    assert empty.find_rows(np.array([3, 50])).tolist() == [-1, -1]


def test_ids_and_description(catalog):
    assert catalog.rows_of_ids([30, 10]).tolist() == [2, 0]
    with pytest.raises(UnknownItemError, match="7"):
        catalog.rows_of_ids([10, 7])
    assert catalog.find_rows(np.array([7, 100, 10, 101, 5, 30, 30])).tolist() == [-1, 9, 0, -1, -1, 2, 2]
    described = catalog.describe(np.array([2]))[0]
    assert described == {"movieId": 30, "title": "Matrix, The (1999)", "year": 1999, "genres": ["Animation"]}


def test_normalize():
    assert normalize("Misérables, Les") == "miserables"
    assert normalize("Matrix, The", keep_article=True) == "the matrix"
    assert normalize("Star Wars: Episode IV - A New Hope") == "star wars episode iv a new hope"
