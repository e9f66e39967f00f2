"""Canonical ratings -> filtered, time-ordered per-user sequences with a leave-one-out split.

Everything is vectorised over whole columns; no Python runs per row or per user.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bert4rec.data.item_features import genre_weights, year_buckets
from bert4rec.data.leave_one_out import evaluable_users, split_labels
from bert4rec.data.movielens import RawDataset, placeholder_movies
from bert4rec.data.settings import PrepareParams
from bert4rec.data.token_types import interaction_types
from bert4rec.data.vocab import ItemVocab
from bert4rec.errors import DataError
from bert4rec.files import (
    INTERACTIONS_FILE,
    MOVIES_FILE,
    PREPARED_FILES,
    STATS_FILE,
    VOCAB_FILE,
    read_versioned,
    record_digests,
    verify_digests,
    versioned,
    write_dir_atomically,
)

VERSION = 1


@dataclass
class Sequences:
    """All users' time-ordered token sequences in CSR form: user u owns ``tokens[offsets[u]:offsets[u+1]]``."""

    offsets: np.ndarray  # (U + 1,) int64
    tokens: np.ndarray  # (total,) int64, item tokens 1..N
    ratings: np.ndarray  # (total,) float32
    timestamps: np.ndarray  # (total,) int64

    @property
    def num_users(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def user(self, u: int) -> np.ndarray:
        return self.tokens[self.offsets[u]:self.offsets[u + 1]]

    def token_types(self) -> np.ndarray:
        """(total,) packed token types of every interaction: its rating and the gap since the previous one."""
        return interaction_types(self.ratings, self.timestamps, self.offsets)


@dataclass
class PreparedDataset:
    interactions: pd.DataFrame  # sorted by user then stable time; see prepare()
    movies: pd.DataFrame  # one row per vocabulary item, in token order
    vocab: ItemVocab
    user_ids: np.ndarray  # (U,) external user id of each user index
    stats: dict

    def sequences(self) -> Sequences:
        """Every interaction of every user (training, validation and test targets included)."""
        df = self.interactions
        counts = np.bincount(df["user_idx"].to_numpy(), minlength=len(self.user_ids))
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return Sequences(offsets, df["item"].to_numpy(np.int64), df["rating"].to_numpy(np.float32),
                         df["timestamp"].to_numpy(np.int64))

    def eval_users(self) -> np.ndarray:
        """User indices that have validation and test targets."""
        return evaluable_users(np.bincount(self.interactions["user_idx"].to_numpy(), minlength=len(self.user_ids)))

    def item_features(self, genres: list[str] | None, years: bool) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The catalogue's features of each item, in token order, as a feature-aware model reads them
        (``item_features.py``): genre weights over ``genres`` (None: not read) and, with ``years``, year buckets."""
        year = self.movies["year"].astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
        return (genre_weights(self.movies["genres"], genres) if genres is not None else None,
                year_buckets(year) if years else None)


def _apply_filters(ratings: pd.DataFrame, params: PrepareParams, source: str) -> pd.DataFrame:
    if params.min_rating is not None:
        if ratings["rating"].isna().all():
            raise DataError(f"{source}: --min-rating given but the data has no ratings")
        ratings = ratings[ratings["rating"].to_numpy() >= params.min_rating]
    # Both counts are taken once, on the data as loaded (the BERT4Rec paper's ML-1M split does this).
    user_codes, _ = pd.factorize(ratings["user_id"])
    item_codes, _ = pd.factorize(ratings["item_id"])
    keep = (np.bincount(user_codes)[user_codes] >= params.min_user_interactions) & (
        np.bincount(item_codes)[item_codes] >= params.min_item_interactions
    )
    kept = ratings[keep]
    if params.samples_users:
        kept = kept[np.isin(kept["user_id"].to_numpy(), sample_users(np.unique(kept["user_id"].to_numpy()), params))]
    if len(kept) == 0:
        raise nothing_left(source, params)
    return kept


def sample_users(users: np.ndarray, params: PrepareParams) -> np.ndarray:
    """The users that ``--sample-users`` keeps, drawn from the sorted distinct ids of the filtered data."""
    size = max(1, round(params.sample_users * len(users)))
    return np.random.default_rng(params.seed).choice(users, size=size, replace=False)


def nothing_left(source: str, params: PrepareParams) -> DataError:
    return DataError(f"{source}: no interactions left after filtering (min rating {params.min_rating}, "
                     f"at least {params.min_user_interactions} per user and {params.min_item_interactions} per item)")


def catalogue(movies: pd.DataFrame, vocab: ItemVocab) -> pd.DataFrame:
    """The movies table restricted to vocabulary items in token order; items without a row get placeholders."""
    table = movies.set_index("item_id").reindex(vocab.item_ids)
    missing = table["title"].isna().to_numpy()
    if missing.any():
        filler = placeholder_movies(vocab.item_ids[missing]).set_index("item_id")
        table.loc[filler.index, ["title", "year", "genres"]] = filler[["title", "year", "genres"]]
    table = table.reset_index()
    table.insert(1, "item", np.arange(1, vocab.num_items + 1, dtype=np.int64))
    return table


def _percentiles(lengths: np.ndarray) -> dict:
    qs = (0, 25, 50, 75, 90, 99, 100)
    values = np.percentile(lengths, qs)
    out = {f"p{q}": float(v) for q, v in zip(qs, values, strict=True)}
    out["mean"] = float(lengths.mean())
    return out


def dataset_stats(source: str, params: PrepareParams, lengths: np.ndarray, num_items: int, num_raw: int,
                  timestamp_range: tuple[int, int], notes: list[str]) -> dict:
    """stats.json of a prepared dataset, from its per-user sequence lengths (users in index order)."""
    num_users, num_interactions = len(lengths), int(lengths.sum())
    return {
        "source": source,
        "params": asdict(params),
        "num_users": num_users,
        "num_items": num_items,
        "num_interactions": num_interactions,
        "num_raw_interactions": num_raw,
        "num_eval_users": len(evaluable_users(lengths)),
        "density": num_interactions / (num_users * num_items),
        "sequence_length": _percentiles(lengths),
        "timestamp_range": list(timestamp_range),
        "notes": list(notes),
    }


def prepare(raw: RawDataset, params: PrepareParams = PrepareParams()) -> PreparedDataset:
    """Filter, sort each user's interactions by time (stable), build the vocabulary and the split."""
    params.validate()
    kept = _apply_filters(raw.ratings, params, raw.source)
    user_id = kept["user_id"].to_numpy()
    # lexsort is stable: interactions with equal (user, timestamp) keep the source file's order.
    order = np.lexsort((kept["timestamp"].to_numpy(), user_id))
    user_id = user_id[order]
    item_id = kept["item_id"].to_numpy()[order]
    new_user = np.r_[True, user_id[1:] != user_id[:-1]]
    user_idx = (np.cumsum(new_user) - 1).astype(np.int32)
    vocab = ItemVocab.from_items(item_id)
    interactions = pd.DataFrame({
        "user_idx": user_idx,
        "item": vocab.encode(item_id).astype(np.int32),
        "user_id": user_id,
        "item_id": item_id,
        "rating": kept["rating"].to_numpy()[order],
        "timestamp": kept["timestamp"].to_numpy()[order],
        "split": split_labels(user_idx),
    })
    user_ids = user_id[new_user]
    lengths = np.diff(np.r_[np.flatnonzero(new_user), len(user_id)])
    timestamps = interactions["timestamp"].to_numpy()
    stats = dataset_stats(raw.source, params, lengths, vocab.num_items, len(raw.ratings),
                          (int(timestamps.min()), int(timestamps.max())), raw.notes)
    return PreparedDataset(interactions, catalogue(raw.movies, vocab), vocab, user_ids, stats)


# --------------------------------------------------------------------------------------------- storage


def save_prepared(dataset: PreparedDataset, out: Path) -> None:
    def write(tmp: Path) -> None:
        pq.write_table(pa.Table.from_pandas(dataset.interactions, preserve_index=False), tmp / INTERACTIONS_FILE)
        write_metadata(tmp, dataset.movies, dataset.vocab, dataset.stats)

    write_dir_atomically(out, write)


def write_metadata(folder: Path, movies: pd.DataFrame, vocab: ItemVocab, stats: dict) -> None:
    """Everything of a prepared folder but the interactions table."""
    pq.write_table(pa.Table.from_pandas(movies, preserve_index=False), folder / MOVIES_FILE)
    vocab.save(folder / VOCAB_FILE)
    (folder / STATS_FILE).write_text(json.dumps(versioned("prepared", VERSION, stats), indent=2))
    record_digests(folder, PREPARED_FILES)


def is_prepared_dir(path: Path) -> bool:
    return (Path(path) / STATS_FILE).is_file() and (Path(path) / INTERACTIONS_FILE).is_file()


def load_prepared(path: Path) -> PreparedDataset:
    path = Path(path)
    verify_digests(path, PREPARED_FILES)
    stats = read_versioned(path / STATS_FILE, "prepared", VERSION,
                           f"not a prepared dataset (no {STATS_FILE}); run `bert4rec prepare` first", DataError)
    try:
        interactions = pq.read_table(path / INTERACTIONS_FILE).to_pandas()
        movies = pq.read_table(path / MOVIES_FILE).to_pandas()
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: unreadable prepared data ({exc})") from None
    vocab = ItemVocab.load(path / VOCAB_FILE)
    user_idx = interactions["user_idx"].to_numpy()
    first = np.r_[True, user_idx[1:] != user_idx[:-1]]
    return PreparedDataset(interactions, movies, vocab, interactions["user_id"].to_numpy()[first], stats)
