"""Recommender: load a trained model folder and recommend for known users, ad-hoc histories or titles.

Serving code: imports the model, the data layer and the catalogue, never the training loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bert4rec.data.preprocess import load_prepared
from bert4rec.data.token_types import (
    GAP_UNKNOWN,
    MASK_ANY,
    UNRATED,
    gap_types,
    mask_type,
    packed,
    rating_types,
)
from bert4rec.errors import Bert4RecError, ChangedFileError, InvalidRequestError, ModelFolderError, UnknownUserError
from bert4rec.files import DATASET_DIR
from bert4rec.model.inputs import inference_inputs
from bert4rec.model.modeling import Bert4Rec
from bert4rec.model.scoring import batched_scores, model_scorer
from bert4rec.serving.catalog import Catalog

MAX_K = 1000


@dataclass
class Filters:
    """Restrictions on what may be recommended."""

    exclude_seen: bool = True
    include: Sequence[int] | None = None  # only these movie ids
    exclude: Sequence[int] | None = None  # never these movie ids
    genres: Sequence[str] | None = None  # at least one of these genres
    year_min: int | None = None
    year_max: int | None = None
    liked: bool = False  # rating-aware models: ask for movies the user would rate 4 stars or more


@dataclass(eq=False)
class Recommendations:
    items: list[dict]  # movieId, title, year, genres, score — best first
    catalog: Catalog = field(repr=False)
    history_rows: np.ndarray  # catalogue rows of the movies the recommendation was based on, oldest first
    fallback: str | None = None  # "popularity" when the history gave the model nothing to work with

    @cached_property
    def history(self) -> list[dict]:
        """The movies it was based on, described when first asked for: a stored history can run to thousands."""
        return self.catalog.describe(self.history_rows)

    def to_dict(self) -> dict:
        return {"items": self.items, "history": self.history, "fallback": self.fallback}

    def __eq__(self, other: object) -> bool:
        # By what they say, not by field: the generated comparison would ask an array for a single truth value.
        if not isinstance(other, Recommendations):
            return NotImplemented
        return self.to_dict() == other.to_dict()


def history_types(count: int, ratings: Sequence[float | None] | None = None,
                  timestamps: Sequence[int | None] | None = None) -> np.ndarray:
    """Packed token types of an ad-hoc history of ``count`` movies: the ratings (None: unknown) and, when every
    movie has one, the gaps between the timestamps (Unix seconds, oldest first)."""
    rating = (rating_types(np.array([np.nan if r is None else r for r in ratings], dtype=np.float64))
              if ratings is not None else np.full(count, UNRATED))
    times = [] if timestamps is None else [t for t in timestamps if t is not None]
    if not times:
        return packed(rating, np.full(count, GAP_UNKNOWN))
    if len(times) != count:
        raise InvalidRequestError("give a timestamp for every movie of the history, or for none")
    times = np.asarray(times, dtype=np.int64)
    if (np.diff(times) < 0).any():
        raise InvalidRequestError("timestamps go back in time: the history must be oldest first")
    return packed(rating, gap_types(times, np.array([0, count])))


class Recommender:
    def __init__(self, model: Bert4Rec, dataset, device: str | torch.device = "cpu"):
        self.model = model.eval()
        self.device = torch.device(device)
        self.vocab = dataset.vocab
        self.histories = dataset.sequences()
        self.history_types = self.histories.token_types()
        self.user_index = pd.Series(np.arange(len(dataset.user_ids)), index=dataset.user_ids)
        popularity = np.bincount(self.histories.tokens - 1, minlength=self.vocab.num_items)
        self.catalog = Catalog(dataset.movies, popularity)
        self.genres = self.catalog.movies["genres"].astype(str).str.lower().str.split("|")
        self._unit_items: torch.Tensor | None = None  # item embeddings scaled to unit length, for "because"

    @classmethod
    def load(cls, model_dir: str | Path, device: str | torch.device = "cpu") -> Recommender:
        folder = Path(model_dir)
        if not folder.is_dir():
            raise ModelFolderError(f"{folder}: no such model folder")
        try:
            model = Bert4Rec.load(folder, device)
            dataset = load_prepared(folder / DATASET_DIR)
        except (ModelFolderError, ChangedFileError):
            raise
        except Bert4RecError as exc:
            raise ModelFolderError(str(exc)) from None
        if model.config.num_items != dataset.vocab.num_items:
            raise ModelFolderError(f"{folder}: model has {model.config.num_items} items but its dataset "
                                   f"{dataset.vocab.num_items}")
        return cls(model, dataset, device)

    # ------------------------------------------------------------------------------------------ core

    def _allowed(self, filters: Filters) -> np.ndarray:
        """(N,) bool: catalogue rows that pass the filters shared by every row of a request."""
        allowed = np.ones(self.vocab.num_items, dtype=bool)
        if filters.include is not None:
            allowed[:] = False
            allowed[self.catalog.rows_of_ids(filters.include)] = True
        if filters.exclude:
            allowed[self.catalog.rows_of_ids(filters.exclude)] = False
        if filters.genres:
            wanted = {g.lower() for g in filters.genres}
            allowed &= self.genres.map(lambda gs: not wanted.isdisjoint(gs)).to_numpy(dtype=bool)
        years = self.catalog.years
        if filters.year_min is not None:
            allowed &= years >= filters.year_min
        if filters.year_max is not None:
            allowed &= (years <= filters.year_max) & (years >= 0)
        return allowed

    def check_request(self, k: int, filters: Filters) -> None:
        """Raise InvalidRequestError for a k or filters this model cannot answer."""
        if not 1 <= k <= MAX_K:
            raise InvalidRequestError(f"k must be between 1 and {MAX_K}, got {k}")
        if filters.liked and not self.model.config.rating_aware:
            raise InvalidRequestError("'liked' needs a rating-aware model (train with --rating-aware)")

    @torch.inference_mode()
    def _top_k(self, users: np.ndarray, k: int, filters: Filters) -> tuple[np.ndarray, np.ndarray]:
        """(U, k) catalogue rows and scores for known users (indices), best first; -inf scores mark slots with
        nothing left to offer. Histories are scored in order of length, so short ones are not padded to the
        longest."""
        seqs = self.histories
        order = np.argsort(seqs.lengths[users], kind="stable")
        starts, ends = seqs.offsets[users[order]], seqs.offsets[users[order] + 1]
        allowed = torch.from_numpy(self._allowed(filters)).to(self.device)
        k = min(k, self.vocab.num_items)
        rows = np.empty((len(starts), k), dtype=np.int64)
        scores = np.empty((len(starts), k), dtype=np.float32)
        types = self.history_types if self.model.config.reads_types else None
        for batch, batch_scores in batched_scores(
                model_scorer(self.model, self.device), seqs.tokens, starts, ends, self.model.config.max_len,
                self.vocab.mask, types, int(mask_type(filters.liked)), filters.exclude_seen):
            top = torch.topk(batch_scores.masked_fill(~allowed, float("-inf")), k, dim=1)
            rows[order[batch]] = top.indices.cpu().numpy()
            scores[order[batch]] = top.values.cpu().numpy()
        return rows, scores

    def _popular(self, k: int, filters: Filters, seen: np.ndarray) -> Recommendations:
        score = np.where(self._allowed(filters), self.catalog.popularity, -np.inf)
        if filters.exclude_seen:
            score[seen] = -np.inf
        order = np.argsort(-score, kind="stable")[:k]
        order = order[np.isfinite(score[order])]
        return self._result(order, score[order], seen, fallback="popularity")

    def _result(self, rows: np.ndarray, scores: np.ndarray, history_rows: np.ndarray,
                fallback: str | None = None, explain: bool = False) -> Recommendations:
        keep = np.isfinite(scores)
        items = self.catalog.describe(rows[keep])
        for item, score in zip(items, scores[keep], strict=True):
            item["score"] = float(score)
        if explain and len(history_rows) and items:
            for item, because in zip(items, self._because(rows[keep], history_rows), strict=True):
                item["because"] = because
        return Recommendations(items, self.catalog, history_rows, fallback)

    def _because(self, rows: np.ndarray, history_rows: np.ndarray, recent: int = 50) -> list[dict]:
        """For each recommended movie, the recent history movie closest to it in the model's item embedding."""
        with torch.inference_mode():
            if self._unit_items is None:
                self._unit_items = torch.nn.functional.normalize(self.model.item_embeddings().float(), dim=1)
            table = self._unit_items
            history = history_rows[-recent:]
            similarity = table[torch.from_numpy(rows)] @ table[torch.from_numpy(history)].T  # (k, h)
            closest = history[similarity.argmax(1).cpu().numpy()]
        described = self.catalog.describe(closest)
        return [{"movieId": d["movieId"], "title": d["title"]} for d in described]

    @torch.inference_mode()
    def score_histories(self, histories: Sequence[np.ndarray], types: Sequence[np.ndarray | None] | None = None,
                        liked: Sequence[bool] | None = None) -> torch.Tensor:
        """(B, N) model scores for the movie after each history (catalogue rows, oldest first), in one pass.
        Each history is truncated to its most recent max_len - 1 movies and followed by [MASK]. A rating-aware
        or time-aware model also reads each history's packed token types (``token_types``; None: no ratings or times
        known) and, where ``liked``, asks for a liked movie."""
        lengths = np.array([len(h) for h in histories], dtype=np.int64)
        ends = np.cumsum(lengths)
        tokens = np.concatenate([np.asarray(h, dtype=np.int64) for h in histories]) + 1
        max_len = self.model.config.max_len
        inputs = self._padded(inference_inputs(tokens, ends - lengths, ends, max_len, self.vocab.mask),
                              self.vocab.mask)
        type_ids = None
        if self.model.config.reads_types:
            types = types or [None] * len(histories)
            flat = np.concatenate([np.zeros(n, dtype=np.int64) if t is None else np.asarray(t, dtype=np.int64)
                                   for n, t in zip(lengths, types, strict=True)])
            type_rows = inference_inputs(flat, ends - lengths, ends, max_len, MASK_ANY)
            type_rows[:, -1] = mask_type(np.asarray(liked or [False] * len(histories), dtype=bool))
            type_ids = torch.from_numpy(self._padded(type_rows, MASK_ANY)).to(self.device)
        return self.model.score_last(torch.from_numpy(inputs).to(self.device), type_ids)[: len(histories)].float()

    def _padded(self, rows: np.ndarray, last: int) -> np.ndarray:
        """Pad rows to a power of two and columns to a multiple of 8: a server sees few distinct shapes, so the
        kernels' per-shape set-up is paid once instead of as latency spikes. Padding changes no score."""
        count = 1 << (len(rows) - 1).bit_length()
        width = min(self.model.config.max_len, -(-rows.shape[1] // 8) * 8)
        padded = np.zeros((count, width), dtype=np.int64)
        padded[: len(rows), width - rows.shape[1] :] = rows
        padded[len(rows) :, -1] = last
        return padded

    @torch.inference_mode()
    def select(self, scores: torch.Tensor, history_rows: np.ndarray, k: int, filters: Filters,
               explain: bool = False) -> Recommendations:
        """Top-k of one row of scores after the filters (seen movies excluded unless asked otherwise)."""
        scores = scores.masked_fill(~torch.from_numpy(self._allowed(filters)).to(scores.device), float("-inf"))
        if filters.exclude_seen and len(history_rows):
            scores[torch.from_numpy(history_rows).to(scores.device)] = float("-inf")
        top = torch.topk(scores, min(k, self.vocab.num_items))
        return self._result(top.indices.cpu().numpy(), top.values.cpu().numpy(), history_rows, explain=explain)

    # ------------------------------------------------------------------------------------------ public

    def _user_index(self, user_id: int) -> int:
        if user_id not in self.user_index.index:
            raise UnknownUserError(f"unknown user id {user_id} (the model knows {len(self.user_index):,} users)")
        return int(self.user_index[user_id])

    def user_history(self, user_id: int) -> np.ndarray:
        """Catalogue rows of a known user's full history, oldest first."""
        return self.histories.user(self._user_index(user_id)) - 1

    def user_types(self, user_id: int) -> np.ndarray:
        """The packed token types (ratings and time gaps) of ``user_history(user_id)``."""
        u = self._user_index(user_id)
        return self.history_types[self.histories.offsets[u] : self.histories.offsets[u + 1]]

    def recommend_user(self, user_id: int, k: int = 10, filters: Filters | None = None) -> Recommendations:
        """Next movies for a user of the training data, from their whole history (with its ratings and times)."""
        return self.recommend_rows(self.user_history(user_id), k, filters, types=self.user_types(user_id))

    def recommend_history(self, movie_ids: Sequence[int], k: int = 10, filters: Filters | None = None,
                          ignore_unknown: bool = False, ratings: Sequence[float | None] | None = None,
                          timestamps: Sequence[int | None] | None = None) -> Recommendations:
        """Next movies after an ad-hoc history of movie ids, oldest first, optionally with their ratings (None:
        unknown) and when each was watched (Unix seconds). Ids the model does not know are an error, or skipped
        with ``ignore_unknown``; a history with no known movie falls back to popularity."""
        for name, values in (("ratings", ratings), ("timestamps", timestamps)):
            if values is not None and len(values) != len(movie_ids):
                raise InvalidRequestError(f"{len(values)} {name} for {len(movie_ids)} movies")
        if ignore_unknown:
            known = [i in self.catalog.row_of_id.index for i in movie_ids]
            movie_ids, ratings, timestamps = (None if values is None else
                                              [v for v, keep in zip(values, known, strict=True) if keep]
                                              for values in (movie_ids, ratings, timestamps))
        types = history_types(len(movie_ids), ratings, timestamps)
        return self.recommend_rows(self.catalog.rows_of_ids(movie_ids), k, filters, types=types)

    def recommend_titles(self, titles: Sequence[str], k: int = 10,
                         filters: Filters | None = None) -> Recommendations:
        """Next movies after a history given as titles, matched forgivingly; ambiguity raises, never guesses."""
        return self.recommend_rows(np.array([self.catalog.match(t) for t in titles], dtype=np.int64), k, filters)

    def recommend_rows(self, rows: np.ndarray, k: int = 10, filters: Filters | None = None,
                       explain: bool = False, types: np.ndarray | None = None) -> Recommendations:
        """Recommendations after a history of catalogue rows (and its packed token types, if known); an empty
        history falls back to popularity."""
        filters = filters or Filters()
        self.check_request(k, filters)
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) == 0:
            return self._popular(k, filters, rows)
        scores = self.score_histories([rows], [types], [filters.liked])[0]
        return self.select(scores, rows, k, filters, explain)

    def recommend_users(self, user_ids: Sequence[int] | None = None, k: int = 10,
                        filters: Filters | None = None) -> pd.DataFrame:
        """Top-k for many known users at once (all users when ``user_ids`` is None), one row per
        (user, rank): userId, rank, movieId, title, score."""
        filters = filters or Filters()
        self.check_request(k, filters)
        if user_ids is None:
            users = np.arange(len(self.user_index))
        else:
            for user_id in user_ids:
                self.user_history(user_id)  # raises on the first unknown id
            users = self.user_index.reindex(np.asarray(user_ids)).to_numpy(dtype=np.int64)
        top, scores = self._top_k(users, k, filters)
        width = top.shape[1]
        keep = np.isfinite(scores).ravel()
        flat = top.ravel()[keep]
        return pd.DataFrame({
            "userId": np.repeat(self.user_index.index.to_numpy()[users], width)[keep],
            "rank": np.tile(np.arange(1, width + 1), len(users))[keep],
            "movieId": self.catalog.movies["item_id"].to_numpy()[flat],
            "title": self.catalog.movies["title"].to_numpy()[flat],
            "score": scores.ravel()[keep],
        })
