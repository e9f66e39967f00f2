"""The event store's reads and writes: events appended with their users, histories read back in order, users
erased, movies added. Each write is one transaction: acknowledged means committed, and a failed write leaves
nothing behind.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Engine, any_, bindparam, delete, func, select, union_all
from sqlalchemy.dialects import postgresql, sqlite

from bert4rec.data.movielens import NO_GENRES
from bert4rec.errors import Bert4RecError, InvalidRequestError, UnknownItemError, UnknownUserError
from bert4rec.store.database import WRITE_OPTION, check_schema, connect, describe, unavailable_as_store_error
from bert4rec.store.schema import MAX_EVENT_ID_LENGTH, events, movies, users


@dataclass(frozen=True)
class Event:
    """One interaction: ``user_id`` watched ``movie_id`` at ``timestamp`` (Unix seconds; None: now), rated
    ``rating`` (None: not rated). ``event_id``, the client's key, makes a retried write a duplicate."""

    user_id: int
    movie_id: int
    rating: float | None = None
    timestamp: int | None = None
    event_id: str | None = None


@dataclass(frozen=True)
class Written:
    stored: int
    duplicates: int  # events whose (user, event_id) was already stored, or given twice in the batch


@dataclass(frozen=True)
class History:
    """A user's most recent events, oldest first."""

    movie_ids: np.ndarray  # int64
    ratings: np.ndarray  # float64, NaN where not rated
    timestamps: np.ndarray  # int64, Unix seconds


@dataclass(frozen=True)
class MovieRecord:
    movie_id: int
    title: str
    year: int | None = None
    genres: str = NO_GENRES


class EventStore:
    """Users, movies and events in a SQLite file or a PostgreSQL database."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.writer = engine.execution_options(**{WRITE_OPTION: True})
        self.on_postgresql = engine.dialect.name == "postgresql"

    @classmethod
    def open(cls, spec=None) -> EventStore:
        """The store at ``spec`` (a path or URL; ``$BERT4REC_DB`` when None), which ``bert4rec db init`` made."""
        engine = connect(spec)
        check_schema(engine)
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    @property
    def name(self) -> str:
        return describe(self.engine.url)

    def insert_ignoring(self, table):
        """INSERT that skips rows whose key is already there (the dialect's ON CONFLICT DO NOTHING)."""
        dialect = postgresql if self.on_postgresql else sqlite
        return dialect.insert(table).on_conflict_do_nothing()

    def one_of(self, column, values: Iterable):
        """``column IN values``; on PostgreSQL ``= ANY(array)``, one parameter whatever the number of values, so the
        driver parses the statement once rather than once for each length of the list."""
        if self.on_postgresql:
            return column == any_(bindparam(None, list(values), type_=postgresql.ARRAY(column.type)))
        return column.in_(values)

    # ------------------------------------------------------------------------------------------ writes

    def add_events(self, batch: Sequence[Event], now: float | None = None) -> Written:
        """Append events, creating their users; all or none are stored. An unknown movie id is an error naming it;
        an event whose (user, event_id) is already stored is counted as a duplicate and not stored again."""
        result = self.add_event_batches([batch], now)[0]
        if isinstance(result, Exception):
            raise result
        return result

    def add_event_batches(self, batches: Sequence[Sequence[Event]], now: float | None = None
                          ) -> list[Written | Bert4RecError]:
        """Several clients' batches in one transaction: one commit (one flush to disk) for all of them, which is
        what lets a server acknowledge many small writes a second. Each batch still stands alone: all of it or none
        is stored, a batch with a bad event or an unknown movie fails by itself (its error in its place), and its
        counts are its own. Of two batches that send the same (user, event_id), the earlier stores it."""
        now = time.time() if now is None else now
        results: list[Written | Bert4RecError | None] = [None] * len(batches)
        prepared = []
        for position, batch in enumerate(batches):
            try:
                prepared.append((position, *_rows(batch, now)))
            except InvalidRequestError as exc:
                results[position] = exc
        wanted = {row["movie_id"] for _, rows, _ in prepared for row in rows}
        if not wanted:  # nothing to write: every batch was empty or failed
            return [Written(0, 0) if r is None else r for r in results]
        with unavailable_as_store_error(self.engine), self.writer.begin() as connection:
            known = set(connection.scalars(select(movies.c.movie_id).where(self.one_of(movies.c.movie_id, wanted))))
            accepted, claimed = [], set()
            for position, rows, duplicates in prepared:
                if unknown := sorted({row["movie_id"] for row in rows} - known):
                    results[position] = _unknown_movies(unknown)
                    continue
                fresh = [row for row in rows if _claim(row, claimed)]
                accepted.append((position, fresh, duplicates + len(rows) - len(fresh)))
            inserted = self._append(connection, [row for _, fresh, _ in accepted for row in fresh], now)
        for position, fresh, duplicates in accepted:
            stored = sum(row["event_id"] is None or (row["user_id"], row["event_id"]) in inserted for row in fresh)
            results[position] = Written(stored, duplicates + len(fresh) - stored)
        return results

    def _append(self, connection, rows: list[dict], now: float) -> set[tuple[int, str]]:
        """Insert the rows and their users; returns the (user, event_id) keys actually stored (not duplicates)."""
        if not rows:
            return set()
        user_ids = sorted({row["user_id"] for row in rows})
        connection.execute(self.insert_ignoring(users), [{"user_id": u, "created_at": now} for u in user_ids])
        if self.on_postgresql:
            returned = connection.execute(_insert_from_arrays(rows))
        else:
            returned = connection.execute(self.insert_ignoring(events).returning(*KEY_COLUMNS), rows)
        return {(user, key) for user, key in returned if key is not None}

    def add_movies(self, records: Iterable[MovieRecord], now: float | None = None) -> int:
        """Add movies (an id already stored keeps its title and genres); returns how many were new."""
        now = time.time() if now is None else now
        rows = [{"movie_id": int(m.movie_id), "title": m.title, "year": m.year, "genres": m.genres, "added_at": now}
                for m in records]
        if not rows:
            return 0
        with unavailable_as_store_error(self.engine), self.writer.begin() as connection:
            return len(connection.execute(self.insert_ignoring(movies).returning(movies.c.movie_id), rows).all())

    def delete_user(self, user_id: int) -> int:
        """Erase a user and every event of theirs; returns how many events went. Unknown users are an error."""
        with unavailable_as_store_error(self.engine), self.writer.begin() as connection:
            erased = connection.execute(delete(events).where(events.c.user_id == user_id)).rowcount
            if connection.execute(delete(users).where(users.c.user_id == user_id)).rowcount == 0:
                raise UnknownUserError(f"unknown user id {user_id}")
        return erased

    # ------------------------------------------------------------------------------------------ reads

    def histories(self, user_ids: Sequence[int], limit: int) -> dict[int, History]:
        """The last ``limit`` events of each user, oldest first, in one query; users with none are absent."""
        ids = sorted(set(user_ids))
        if not ids or limit < 1:
            return {}
        params = {f"user{i}": user_id for i, user_id in enumerate(ids)} | {"limit": limit}
        with unavailable_as_store_error(self.engine), self.engine.connect() as connection:
            rows = connection.execute(_last_events(len(ids)), params).all()
        if not rows:
            return {}
        # Column arrays in one pass each (a rating of None becomes NaN), ordered by user, then oldest first with ties
        # in arrival order (the row id), then one slice per user: histories run to thousands of events.
        user_of_row, movie_ids, ratings, timestamps, arrival = (
            np.array(column, dtype) for column, dtype in zip(zip(*rows, strict=True), READ_TYPES, strict=True))
        order = np.lexsort((arrival, timestamps, user_of_row))
        user_of_row, movie_ids, ratings, timestamps = (a[order] for a in (user_of_row, movie_ids, ratings, timestamps))
        starts = np.flatnonzero(np.r_[True, user_of_row[1:] != user_of_row[:-1]])
        ends = np.r_[starts[1:], len(rows)]
        return {int(user_of_row[a]): History(movie_ids[a:b], ratings[a:b], timestamps[a:b])
                for a, b in zip(starts, ends, strict=True)}

    def user_events(self, user_id: int, limit: int = 100) -> list[dict]:
        """A user's events, newest first, as stored. Unknown users are an error."""
        query = (select(events.c.movie_id, events.c.rating, events.c.timestamp, events.c.received_at,
                        events.c.event_id)
                 .where(events.c.user_id == user_id)
                 .order_by(events.c.timestamp.desc(), events.c.id.desc()).limit(limit))
        with unavailable_as_store_error(self.engine), self.engine.connect() as connection:
            if connection.scalar(select(users.c.user_id).where(users.c.user_id == user_id)) is None:
                raise UnknownUserError(f"unknown user id {user_id}")
            return [{"movieId": m, "rating": r, "timestamp": t, "receivedAt": at, "eventId": e}
                    for m, r, t, at, e in connection.execute(query)]

    def all_movies(self) -> list[MovieRecord]:
        query = select(movies.c.movie_id, movies.c.title, movies.c.year, movies.c.genres).order_by(movies.c.movie_id)
        with unavailable_as_store_error(self.engine), self.engine.connect() as connection:
            return [MovieRecord(*row) for row in connection.execute(query)]

    def ping(self) -> None:
        """Raise StoreError unless the database answers."""
        with unavailable_as_store_error(self.engine), self.engine.connect() as connection:
            connection.execute(select(1))

    def counts(self) -> dict[str, int]:
        """How many users, movies and events the store holds."""
        with unavailable_as_store_error(self.engine), self.engine.connect() as connection:
            return {table.name: connection.scalar(select(func.count()).select_from(table))
                    for table in (users, movies, events)}


@functools.lru_cache(maxsize=256)
def _last_events(users: int):
    """The last ``:limit`` events of each of ``:user0`` ... ``:user{users-1}``, newest first, in no order between
    users: per user, the index on (user, time) read backwards and cut at the limit, so that neither database sorts
    a user's whole history. One statement per number of users, built once: building it is much of a read's cost."""
    def newest(i: int):
        return (select(events.c.user_id, events.c.movie_id, events.c.rating, events.c.timestamp, events.c.id)
                .where(events.c.user_id == bindparam(f"user{i}"))
                .order_by(events.c.timestamp.desc(), events.c.id.desc()).limit(bindparam("limit")).subquery())
    return union_all(*(select(newest(i)) for i in range(users)))


READ_TYPES = (np.int64, np.int64, np.float64, np.int64, np.int64)  # the columns _last_events reads, in order
KEY_COLUMNS = (events.c.user_id, events.c.event_id)
ROW_COLUMNS = ("user_id", "movie_id", "rating", "timestamp", "received_at", "event_id")


def _insert_from_arrays(rows: list[dict]):
    """PostgreSQL: the rows as one array per column, unnested in their order. A statement with one parameter a
    column is the same text for any number of rows, where a VALUES list of thousands of placeholders is a new query
    that the driver must parse for every batch."""
    arrays = [bindparam(name, [row[name] for row in rows], type_=postgresql.ARRAY(events.c[name].type))
              for name in ROW_COLUMNS]
    unnested = func.unnest(*arrays).table_valued(*ROW_COLUMNS, with_ordinality="position").render_derived()
    source = select(*(unnested.c[name] for name in ROW_COLUMNS)).order_by(unnested.c.position)  # ids in row order
    return (postgresql.insert(events).from_select(ROW_COLUMNS, source).on_conflict_do_nothing()
            .returning(*KEY_COLUMNS))


def _unknown_movies(unknown: list[int]) -> UnknownItemError:
    shown = ", ".join(map(str, unknown[:10])) + (" ..." if len(unknown) > 10 else "")
    return UnknownItemError(f"unknown movie id{'s' * (len(unknown) > 1)} {shown} (add it with POST /movies first)")


def _claim(row: dict, claimed: set) -> bool:
    """Whether this row is the first of its (user, event_id) among the batches written together."""
    if row["event_id"] is None:
        return True
    key = (row["user_id"], row["event_id"])
    if key in claimed:
        return False
    claimed.add(key)
    return True


def _rows(batch: Sequence[Event], now: float) -> tuple[list[dict], int]:
    """The events as table rows, checked, and how many repeat an event_id given earlier in the batch."""
    rows, keys = [], set()
    for position, e in enumerate(batch):
        if e.rating is not None and not math.isfinite(e.rating):
            raise InvalidRequestError(f"event {position}: rating {e.rating} is not a finite number")
        if e.event_id is not None:
            if not 0 < len(e.event_id) <= MAX_EVENT_ID_LENGTH:
                raise InvalidRequestError(f"event {position}: eventId must be 1 to {MAX_EVENT_ID_LENGTH} characters")
            if (e.user_id, e.event_id) in keys:
                continue
            keys.add((e.user_id, e.event_id))
        rows.append({"user_id": int(e.user_id), "movie_id": int(e.movie_id), "rating": e.rating,
                     "timestamp": int(now) if e.timestamp is None else int(e.timestamp), "received_at": now,
                     "event_id": e.event_id})
    return rows, len(batch) - len(rows)

