"""Bulk moves between the store and files: ``import_dataset`` loads any dataset ``prepare`` reads (PostgreSQL
through COPY), ``export_dataset`` writes the ratings/movies parquet layout that ``prepare`` and ``train`` read,
streamed, so neither holds more than a chunk of events at a time beyond what the reader itself needs, and
``prepare_from_store`` prepares the store's events as they are now, out of core.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Connection, func, select

from bert4rec.data.movielens import RawDataset, placeholder_movies
from bert4rec.data.outofcore import prepare_partitioned
from bert4rec.data.settings import DEFAULT_MEMORY_LIMIT, PrepareParams
from bert4rec.errors import StoreError
from bert4rec.files import write_dir_atomically
from bert4rec.progress import bar
from bert4rec.store.database import database_url, describe, unavailable_as_store_error
from bert4rec.store.events import EventStore
from bert4rec.store.schema import events, movies, users

CHUNK_ROWS = 50_000
EVENT_COLUMNS = ("user_id", "movie_id", "rating", "timestamp", "received_at")
RATINGS_SCHEMA = pa.schema([("userId", pa.int64()), ("movieId", pa.int64()), ("rating", pa.float64()),
                            ("timestamp", pa.int64())])


@dataclass(frozen=True)
class Transferred:
    users: int
    movies: int
    events: int


def import_dataset(store: EventStore, raw: RawDataset, append: bool = False, progress: bool = True) -> Transferred:
    """Add a dataset's movies, users and ratings (as events, in the file's order) in one transaction. A store that
    already holds events is refused unless ``append``: importing twice would double every history."""
    now = time.time()
    ratings = raw.ratings
    with unavailable_as_store_error(store.engine), store.writer.begin() as connection:
        if not append and connection.scalar(select(events.c.id).limit(1)) is not None:
            raise StoreError(f"{store.name} already holds events; importing {raw.source} would add its histories "
                             "after them (pass --append if that is what you want)")
        new_movies = _insert_movies(store, connection, _with_placeholders(raw.movies, ratings), now)
        user_ids = np.unique(ratings["user_id"].to_numpy())
        new_users = 0
        for start in range(0, len(user_ids), CHUNK_ROWS):
            chunk = [{"user_id": int(u), "created_at": now} for u in user_ids[start : start + CHUNK_ROWS]]
            new_users += len(connection.execute(store.insert_ignoring(users).returning(users.c.user_id), chunk).all())
        _append_events(connection, ratings, now, progress)
    return Transferred(new_users, new_movies, len(ratings))


def _with_placeholders(table: pd.DataFrame, ratings: pd.DataFrame) -> pd.DataFrame:
    """The movies table plus an "item N" row for every rated id it lacks (the events need their movie)."""
    missing = np.setdiff1d(ratings["item_id"].unique(), table["item_id"].to_numpy())
    return pd.concat([table, placeholder_movies(missing)], ignore_index=True) if len(missing) else table


def _insert_movies(store: EventStore, connection: Connection, table: pd.DataFrame, now: float) -> int:
    rows = [{"movie_id": int(m), "title": str(t), "year": None if pd.isna(y) else int(y), "genres": str(g),
             "added_at": now}
            for m, t, y, g in zip(table["item_id"], table["title"], table["year"], table["genres"], strict=True)]
    inserted = 0
    for start in range(0, len(rows), CHUNK_ROWS):
        statement = store.insert_ignoring(movies).returning(movies.c.movie_id)
        inserted += len(connection.execute(statement, rows[start : start + CHUNK_ROWS]).all())
    return inserted


def _append_events(connection: Connection, ratings: pd.DataFrame, now: float, progress: bool) -> None:
    postgres = connection.dialect.name == "postgresql"
    driver = connection.connection.driver_connection
    placeholders = ", ".join(["%s" if postgres else "?"] * len(EVENT_COLUMNS))
    columns = ", ".join(f'"{c}"' for c in EVENT_COLUMNS)
    with bar(total=len(ratings), unit=" events", desc="events", enabled=progress) as shown:
        for start in range(0, len(ratings), CHUNK_ROWS):
            rows = _event_tuples(ratings.iloc[start : start + CHUNK_ROWS], now)
            if postgres:
                with driver.cursor() as cursor, cursor.copy(f"COPY events ({columns}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            else:
                driver.cursor().executemany(f"INSERT INTO events ({columns}) VALUES ({placeholders})", rows)
            shown.update(len(rows))


def _event_tuples(chunk: pd.DataFrame, now: float) -> list[tuple]:
    rating = chunk["rating"].to_numpy(np.float64)
    rating = np.where(np.isnan(rating), None, rating).tolist()
    return list(zip(chunk["user_id"].tolist(), chunk["item_id"].tolist(), rating, chunk["timestamp"].tolist(),
                    [now] * len(chunk), strict=True))


def export_dataset(store: EventStore, out: Path, progress: bool = True) -> Transferred:
    """Write ``out/ratings.parquet`` (userId, movieId, rating, timestamp: every event, in arrival order) and
    ``out/movies.parquet`` (movieId, title, genres), as one snapshot of the store, replacing ``out`` only once both
    are complete."""
    written = {}

    def write(tmp: Path) -> None:
        with unavailable_as_store_error(store.engine), _snapshot(store) as connection:
            listed = connection.execute(select(movies.c.movie_id, movies.c.title, movies.c.genres)
                                        .order_by(movies.c.movie_id)).all()
            pq.write_table(pa.table({"movieId": pa.array([m[0] for m in listed], pa.int64()),
                                     "title": [m[1] for m in listed], "genres": [m[2] for m in listed]}),
                           tmp / "movies.parquet")
            written["movies"] = len(listed)
            written["users"] = connection.scalar(select(func.count()).select_from(users))
            written["events"] = _write_ratings(connection, tmp / "ratings.parquet", progress)

    write_dir_atomically(Path(out), write)
    return Transferred(**written)


@contextlib.contextmanager
def _snapshot(store: EventStore) -> Iterator[Connection]:
    """A read-only transaction that sees one moment of the store, however long the export takes."""
    engine = store.engine
    if engine.dialect.name == "postgresql":
        engine = engine.execution_options(isolation_level="REPEATABLE READ")
    with engine.connect() as connection, connection.begin():
        yield connection


def _write_ratings(connection: Connection, path: Path, progress: bool) -> int:
    total = connection.scalar(select(func.count()).select_from(events))
    query = select(events.c.user_id, events.c.movie_id, events.c.rating, events.c.timestamp).order_by(events.c.id)
    result = connection.execution_options(yield_per=CHUNK_ROWS).execute(query)
    with pq.ParquetWriter(path, RATINGS_SCHEMA) as writer, \
            bar(total=total, unit=" events", desc="events", enabled=progress) as shown:
        for part in result.partitions():
            rows = list(zip(*part, strict=True))
            columns = [pa.array(values, field.type) for values, field in zip(rows, RATINGS_SCHEMA, strict=True)]
            writer.write_table(pa.Table.from_arrays(columns, schema=RATINGS_SCHEMA))
            shown.update(len(part))
    return total


def prepare_from_store(url: str, out: Path, params: PrepareParams | None = None,
                       memory_limit: str = DEFAULT_MEMORY_LIMIT, temp_dir: Path | None = None,
                       progress: bool = True) -> dict:
    """Prepare the events of the store at ``url`` as they are now (one snapshot; erased users gone) into ``out``,
    as ``prepare`` does any dataset: streamed out into a temporary parquet file, then prepared out of core, so a
    large table never sits whole in memory. Returns the dataset's stats."""
    store = EventStore.open(url)
    try:
        with tempfile.TemporaryDirectory(prefix="bert4rec-store-", dir=temp_dir) as tmp:
            export_dataset(store, Path(tmp) / "events", progress=progress)
            return prepare_partitioned(Path(tmp) / "events", out, params, memory_limit=memory_limit,
                                       temp_dir=temp_dir, progress=progress, source=describe(database_url(url)))
    finally:
        store.close()
