"""The movie catalogue of a model: lookup by id, forgiving title search and title matching.

MovieLens titles look like ``Matrix, The (1999)`` or ``City of Lost Children, The (Cité des enfants perdus, La)
(1995)``. Each title gets normalised keys (lower case, accents and punctuation removed, the release year and a
trailing or leading article dropped, the alternate title in parentheses as a second key), so that "the matrix",
"Matrix" and "matrix 1999" all find the same movie.
"""

from __future__ import annotations

import difflib
import json
import re
import unicodedata
from functools import cached_property

import numpy as np
import pandas as pd

from bert4rec.data.movielens import NO_GENRES, TITLE_YEAR
from bert4rec.errors import AmbiguousTitleError, TitleNotFoundError, UnknownItemError

_QUERY_YEAR = re.compile(r"\s*\(?(\d{4})\)?\s*$")
_ALTERNATE = re.compile(r"^(.*?)\s*\((.+)\)\s*$")
_ARTICLE_END = re.compile(r",\s*(the|a|an|les|la|le|l'|il|el|der|die|das|los|las)$")
_ARTICLE_START = re.compile(r"^(the|a|an)\s+")
MAX_CANDIDATES = 8


def normalize(text: str, keep_article: bool = False) -> str:
    """Lower case, accents folded, punctuation as spaces. A MovieLens trailing article ("Matrix, The") moves to
    the front with ``keep_article``, else articles at either end are dropped."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower().strip()
    article = _ARTICLE_END.search(text)
    text = _ARTICLE_END.sub("", text)
    if keep_article and article:
        text = f"{article.group(1)} {text}"
    text = re.sub(r"[^a-z0-9]+", " ", text).strip()
    return text if keep_article else _ARTICLE_START.sub("", text)


def title_keys(title: str) -> tuple[str, str, str]:
    """(title as written, title without articles, alternate title without articles) of a MovieLens title."""
    bare = TITLE_YEAR.sub("", title)
    alternate = ""
    found = _ALTERNATE.match(bare)
    if found:
        bare, alternate = found.group(1), found.group(2)
        alternate = alternate[6:] if alternate.lower().startswith("a.k.a.") else alternate
    return normalize(bare, keep_article=True), normalize(bare), normalize(alternate) if alternate else ""


class Catalog:
    """Movies in token order: row i is item token i + 1."""

    def __init__(self, movies: pd.DataFrame, popularity: np.ndarray):
        self.movies = movies.reset_index(drop=True)
        self.popularity = np.asarray(popularity, dtype=np.float64)
        keys = [title_keys(str(t)) for t in self.movies["title"]]
        self.written = pd.Series([k[0] for k in keys], dtype="string")
        self.primary = np.array([k[1] for k in keys], dtype=object)
        self.alternate = np.array([k[2] for k in keys], dtype=object)
        self.years = self.movies["year"].astype("Float64").fillna(-1).to_numpy(dtype=np.int64)
        ids = self.movies["item_id"].to_numpy(dtype=np.int64)
        self.row_of_id = pd.Series(np.arange(len(self.movies)), index=ids)
        self._id_order = np.argsort(ids, kind="stable")
        self._sorted_ids = ids[self._id_order]
        # One plain dict per movie, built once: describing results is then a list lookup, not a pandas query.
        self._described = [
            {"movieId": int(i), "title": str(t), "year": None if pd.isna(y) else int(y),
             "genres": [] if g == NO_GENRES else str(g).split("|")}
            for i, t, y, g in zip(self.movies["item_id"], self.movies["title"], self.movies["year"],
                                  self.movies["genres"], strict=True)]

    def __len__(self) -> int:
        return len(self.movies)

    def rows_of_ids(self, movie_ids) -> np.ndarray:
        """Catalogue rows (0-based item columns) of external movie ids; raises on unknown ids."""
        ids = np.asarray(list(movie_ids), dtype=np.int64)
        rows = self.find_rows(ids)
        unknown = ids[rows < 0]
        if len(unknown):
            raise UnknownItemError(f"unknown movie id(s): {', '.join(map(str, unknown[:10]))} "
                                   f"(not in this model's catalogue of {len(self):,} movies)")
        return rows

    def find_rows(self, movie_ids: np.ndarray) -> np.ndarray:
        """Catalogue rows of external movie ids, -1 where an id is not in the catalogue: one binary search over
        the sorted ids for a whole history, with no index built per call."""
        ids = np.asarray(movie_ids, dtype=np.int64)
        if len(self._sorted_ids) == 0:
            return np.full(len(ids), -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(self._sorted_ids, ids), len(self._sorted_ids) - 1)
        return np.where(self._sorted_ids[at] == ids, self._id_order[at], -1).astype(np.int64)

    def describe(self, rows: np.ndarray) -> list[dict]:
        """movieId, title, year and genres of catalogue rows (fresh dicts, safe to extend)."""
        return [dict(self._described[row], genres=list(self._described[row]["genres"])) for row in rows]

    def json_list(self, rows: np.ndarray) -> str:
        """The movies of catalogue rows as a JSON array, as the REST API's Movie writes them, joined from each
        movie's JSON encoded once: a long history costs a join, not a dict and an encoding per movie per request."""
        encoded = self._encoded
        return "[" + ",".join([encoded[row] for row in rows]) + "]"

    @cached_property
    def _encoded(self) -> list[str]:
        return [json.dumps({**movie, "recommendable": True}, ensure_ascii=False) for movie in self._described]

    def _tiers(self, query: str) -> np.ndarray:
        """Match tier of every movie for a query: 0 exact as written, 1 exact up to articles, 2 prefix,
        3 contains, 4 closest typo match, 5 other typo matches, 9 none. A trailing year in the query
        ("heat 1995") must match too."""
        year = None
        found = _QUERY_YEAR.search(query)
        if found and _QUERY_YEAR.sub("", query).strip():
            year, query = int(found.group(1)), _QUERY_YEAR.sub("", query)
        key = normalize(query)
        tiers = np.full(len(self), 9, dtype=np.int64)
        if not key:
            return tiers
        tiers[(self.written == normalize(query, keep_article=True)).to_numpy(dtype=bool)] = 0
        for names in (self.alternate, self.primary):
            series = pd.Series(names, dtype="string")
            contains = series.str.contains(key, regex=False).to_numpy(dtype=bool)
            prefix = series.str.startswith(key).to_numpy(dtype=bool)
            exact = (series == key).to_numpy(dtype=bool)
            tiers = np.minimum(tiers, np.where(exact, 1, np.where(prefix, 2, np.where(contains, 3, 9))))
        if (tiers == 9).all():  # a typo: the closest titles by edit similarity, the clear best first
            close = difflib.get_close_matches(key, list(set(self.primary)), n=MAX_CANDIDATES, cutoff=0.75)
            ratios = [difflib.SequenceMatcher(None, key, c).ratio() for c in close]
            for name, ratio in zip(close, ratios, strict=True):
                tiers[self.primary == name] = 4 if ratio >= max(ratios) - 0.02 else 5
        if year is not None:
            tiers[self.years != year] = 9
        return tiers

    def search(self, query: str, limit: int = 10) -> list[dict]:
        """Movies matching a typed query, best first (exact, prefix, contains, fuzzy; popular first within each)."""
        return search_catalogues([self], query, limit)

    def match(self, title: str) -> int:
        """The catalogue row of the one movie a title means; raises when none or several fit equally well."""
        tiers = self._tiers(title)
        best = tiers.min()
        if best == 9:
            raise TitleNotFoundError(f"no movie matches the title '{title}'")
        rows = np.flatnonzero(tiers == best)
        if len(rows) == 1:
            return int(rows[0])
        rows = rows[np.argsort(-self.popularity[rows], kind="stable")][:MAX_CANDIDATES]
        candidates = self.describe(rows)
        listed = "; ".join(f"{c['title']} [id {c['movieId']}]" for c in candidates)
        raise AmbiguousTitleError(f"the title '{title}' matches several movies: {listed} — add the year or use "
                                  "the movie id", candidates)


def search_catalogues(catalogues: list[Catalog], query: str, limit: int = 10) -> list[dict]:
    """The best matches for a query across several catalogues (the model's, and movies added since), ranked as one:
    by match tier, then popularity."""
    described, tiers, popularity = [], [], []
    for catalogue in catalogues:
        tier = catalogue._tiers(query)
        hits = np.flatnonzero(tier < 9)
        order = np.lexsort((-catalogue.popularity[hits], tier[hits]))[:limit]
        described += catalogue.describe(hits[order])
        tiers.append(tier[hits[order]])
        popularity.append(catalogue.popularity[hits[order]])
    if not described:
        return []
    order = np.lexsort((-np.concatenate(popularity), np.concatenate(tiers)))
    return [described[i] for i in order[:limit]]
