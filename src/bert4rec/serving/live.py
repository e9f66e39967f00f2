"""The server with an event store (``bert4rec serve MODEL --db URL``): events in, recommendations that follow them.

A user's recommendations are computed from their stored history at request time, so an acknowledged event shapes
the very next request, with no retraining. The histories of the users waiting at one moment are read in one query
on the store's own worker (:class:`HistoryReader`) while the model's worker scores the previous batch.

The store is the only source of histories: a user with no stored events (never seen, or erased) gets the popularity
fallback, flagged, even if the model's training data had them. ``bert4rec db import`` the data a model was trained
on to serve its users from their past.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Annotated

import numpy as np
import pandas as pd
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from bert4rec.data.movielens import NO_GENRES, parse_year
from bert4rec.data.token_types import interaction_types
from bert4rec.serving.access import Keys, Metrics
from bert4rec.serving.batching import Batcher, MicroBatcher
from bert4rec.serving.catalog import Catalog
from bert4rec.serving.recommender import Filters, Recommender
from bert4rec.serving.schemas import (
    ID_RANGE,
    MAX_CLOCK_SKEW_S,
    MAX_HISTORY,
    Erased,
    ErrorBody,
    EventBatch,
    EventIn,
    EventsWritten,
    KQuery,
    LikedQuery,
    Movie,
    NewMovie,
    RecommendationResponse,
    StoredEvent,
    UserIdPath,
    recommendations_body,
)
from bert4rec.serving.swap import LiveModel
from bert4rec.serving.workers import Peers, Signal
from bert4rec.store import Event, EventStore, History, MovieRecord

HISTORY_LIMIT = MAX_HISTORY  # the newest events read per user: the model reads fewer, seen-exclusion uses them all
MAX_EVENTS_LISTED = 1000


class HistoryReader(Batcher):
    """Reads the stored histories of every user waiting, in one query."""

    def __init__(self, store: EventStore, max_batch: int = 64, on_batch: Callable[[int], None] | None = None):
        super().__init__(self._read, max_batch, "store", on_batch)
        self.store = store

    async def history(self, user_id: int) -> History | None:
        return await self.submit(user_id)

    def _read(self, user_ids: Sequence[int]) -> list[History | None]:
        found = self.store.histories(user_ids, HISTORY_LIMIT)
        return [found.get(user_id) for user_id in user_ids]


class AddedMovies:
    """Movies in the store that the model does not know (added after it was trained): searchable, not yet
    recommendable."""

    def __init__(self, store: EventStore, known: pd.Index, signal: Signal | None = None):
        self.store, self.known = store, known
        self.signal = signal  # with several workers: replaced by the one that adds a movie
        self.catalog = self._load()

    def _load(self) -> Catalog:
        records = [m for m in self.store.all_movies() if m.movie_id not in self.known]
        titles = pd.Series([m.title for m in records], dtype="string")
        movies = pd.DataFrame({"item_id": np.array([m.movie_id for m in records], dtype=np.int64), "title": titles,
                               "year": pd.array([m.year for m in records], dtype="Int64"),
                               "genres": pd.Series([m.genres for m in records], dtype="string")})
        return Catalog(movies, np.zeros(len(movies)))

    def refresh(self, known: pd.Index | None = None) -> None:
        """Read the added movies again; ``known``: the movies a newly live model knows, no longer 'added'."""
        if known is not None:
            self.known = known
        self.catalog = self._load()

    async def catch_up(self) -> None:
        """Read the added movies again if another worker of this server has added one since this one looked."""
        if self.signal is not None and self.signal.received():
            await run_in_threadpool(self.refresh)

    async def added_here(self) -> None:
        """Read the added movies again after this worker added one, and tell the others."""
        await run_in_threadpool(self.refresh)
        if self.signal is not None:
            self.signal.send()

    def describe(self, movie_id: int) -> dict | None:
        rows = self.catalog.row_of_id
        if movie_id not in rows.index:
            return None
        return dict(self.catalog.describe(np.array([rows[movie_id]]))[0], recommendable=False)


def model_history(recommender: Recommender, history: History) -> tuple[np.ndarray, np.ndarray | None]:
    """Catalogue rows and packed token types (None for a model that reads none) of a stored history, without the
    movies the model does not know."""
    found = recommender.catalog.find_rows(history.movie_ids)
    keep = found >= 0
    rows = found[keep]
    if not recommender.model.config.reads_types:
        return rows, None
    # A stored history has every timestamp, oldest first: its types come straight from the arrays.
    return rows, interaction_types(history.ratings[keep], history.timestamps[keep], np.array([0, len(rows)]))


def add_live_routes(app: FastAPI, live: LiveModel, batcher: MicroBatcher, store: EventStore, keys: Keys,
                    metrics: Metrics, max_batch: int, peers: Peers | None = None) -> AddedMovies:
    """The store's routes, and user recommendations read from it. Returns the added-movies catalogue."""
    reader = HistoryReader(store, max_batch, metrics.batch_size.labels("store").observe)
    # Writes, too, are gathered: the requests waiting at one moment are committed in one transaction, one flush to
    # disk for all, on one thread, so concurrent writers never queue on the database's lock.
    writer = Batcher(store.add_event_batches, max_batch, "writes", metrics.batch_size.labels("writes").observe)
    app.state.history_reader, app.state.event_writer = reader, writer
    added = AddedMovies(store, live.recommender.catalog.row_of_id.index, peers.movies if peers else None)
    live.on_swap.append(lambda recommender: added.refresh(recommender.catalog.row_of_id.index))

    async def may_write(request: Request) -> None:
        keys.check(request, write=True)

    writes = [Depends(may_write)]
    errors = {status: {"model": ErrorBody} for status in (401, 403, 404, 409, 413, 422, 503)}

    @app.post("/events", response_model=EventsWritten, dependencies=writes, responses=errors)
    async def post_events(body: EventBatch | EventIn) -> JSONResponse:
        """Store one event or a batch (all or none). Unknown users are created; an unknown movieId is a 422 that
        names it. Acknowledged events are committed."""
        batch = body if isinstance(body, list) else [body]
        horizon = time.time() + MAX_CLOCK_SKEW_S
        for position, e in enumerate(batch):
            if e.timestamp is not None and e.timestamp > horizon:
                raise HTTPException(422, f"event {position}: timestamp {e.timestamp} is more than a day ahead of "
                                         "the server's clock")
        events = [Event(e.userId, e.movieId, e.rating, e.timestamp, e.eventId) for e in batch]
        written = await writer.submit(events)
        metrics.events_stored.inc(written.stored)
        metrics.events_duplicate.inc(written.duplicates)
        return JSONResponse({"stored": written.stored, "duplicates": written.duplicates})

    @app.get("/users/{userId}/events", response_model=list[StoredEvent], responses=errors)
    async def user_events(userId: Annotated[int, Path(**ID_RANGE)],
                          limit: Annotated[int, Query(ge=1, le=MAX_EVENTS_LISTED)] = 100) -> list[dict]:
        """A user's stored events, newest first."""
        return await run_in_threadpool(store.user_events, userId, limit)

    @app.delete("/users/{userId}", response_model=Erased, dependencies=writes, responses=errors)
    async def erase_user(userId: Annotated[int, Path(**ID_RANGE)]) -> dict:
        """Erase a user and all their events: later exports and retraining no longer see them."""
        return {"userId": userId, "events": await run_in_threadpool(store.delete_user, userId)}

    @app.post("/movies", response_model=Movie, status_code=201, dependencies=writes, responses=errors)
    async def add_movie(movie: NewMovie) -> dict:
        """Add a movie: stored at once and findable by /movies?q=; recommendable once the model is retrained."""
        if movie.movieId in live.recommender.catalog.row_of_id.index:
            raise HTTPException(409, f"movie id {movie.movieId} is already in the catalogue")
        record = MovieRecord(movie.movieId, movie.title.strip(), _year(movie.title),
                             "|".join(movie.genres) or NO_GENRES)
        if await run_in_threadpool(store.add_movies, [record]) == 0:
            raise HTTPException(409, f"movie id {movie.movieId} was already added")
        await added.added_here()
        return added.describe(movie.movieId)

    @app.get("/users/{userId}/recommendations", response_model=RecommendationResponse, responses=errors)
    async def recommend_user(userId: UserIdPath, k: KQuery = 10, liked: LikedQuery = False) -> Response:
        """Recommendations from the user's stored events, read now (the latest event counts)."""
        recommender = live.recommender  # kept to the end, even if a swap comes between
        filters = Filters(liked=liked)
        recommender.check_request(k, filters)
        stored = await reader.history(userId)
        rows, types = model_history(recommender, stored) if stored is not None else (np.empty(0, np.int64), None)
        if len(rows) == 0:
            return recommendations_body(recommender.recommend_rows(rows, k, filters))  # popularity, flagged
        return recommendations_body(await batcher.recommend(recommender, rows, types, k, filters, True))

    return added


def _year(title: str) -> int | None:
    year = parse_year(pd.Series([title], dtype="string")).iloc[0]
    return None if pd.isna(year) else int(year)
