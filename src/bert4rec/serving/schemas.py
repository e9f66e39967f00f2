"""The REST API's request and response bodies (pydantic), with the limits every request is checked against."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from bert4rec.serving.recommender import MAX_K, Recommendations

MAX_HISTORY = 10_000
# User and movie ids: what a 64-bit database column holds, less the negatives, which no catalogue or site uses and
# which a request sends only by mistake or malice.
ID_RANGE = {"ge": 0, "le": 2**63 - 1}

# Parameters of GET /users/{userId}/recommendations, with or without an event store
UserIdPath = Annotated[int, Path(**ID_RANGE)]
KQuery = Annotated[int, Query(ge=1, le=MAX_K)]
LikedQuery = Annotated[bool, Query(description="Rating-aware models only: movies the user would rate 4 stars or more.")]


class Watched(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rating: float | None = Field(None, ge=0, le=5, allow_inf_nan=False,
                                 description="0-5 stars; read by rating-aware models.")
    timestamp: int | None = Field(None, ge=0, le=2**53, description="When it was watched, Unix seconds; read by "
                                  "time-aware models when every movie of the history has one.")


class WatchedById(Watched):
    """A watched movie by movieId, optionally with a rating and a timestamp."""

    movieId: int = Field(**ID_RANGE)


class WatchedByTitle(Watched):
    """A watched movie by title (matched forgivingly: case, accents, articles, typos), optionally with a rating
    and a timestamp."""

    title: str = Field(min_length=1, max_length=300)


HistoryEntry = WatchedById | WatchedByTitle


class RecommendationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    history: list[HistoryEntry] = Field(default_factory=list, max_length=MAX_HISTORY,
                                        description="Watched movies, oldest first.")
    k: int = Field(10, ge=1, le=MAX_K)
    exclude_seen: bool = True
    genres: list[Annotated[str, Field(min_length=1, max_length=50)]] | None = Field(None, max_length=50)
    year_min: int | None = Field(None, ge=1000, le=3000)
    year_max: int | None = Field(None, ge=1000, le=3000)
    exclude: list[Annotated[int, Field(**ID_RANGE)]] | None = Field(None, max_length=MAX_HISTORY)
    ignore_unknown: bool = Field(False, description="Skip unknown movieIds instead of failing.")
    liked: bool = Field(False, description="Rating-aware models only: movies the user would rate 4 stars or more.")
    explain: bool = Field(True, description="Add a 'because you watched' movie to each recommendation.")


class Movie(BaseModel):
    movieId: int
    title: str
    year: int | None
    genres: list[str]
    recommendable: bool = Field(True, description="False for a movie added after the model was trained: the model "
                                                  "can recommend it once it is retrained.")


class Because(BaseModel):
    movieId: int
    title: str


class Recommendation(Movie):
    score: float
    because: Because | None = None


class RecommendationResponse(BaseModel):
    items: list[Recommendation]
    history: list[Movie]
    fallback: str | None = Field(None, description="'popularity' when no known movie was in the history.")


def recommendations_body(found: Recommendations) -> Response:
    """A RecommendationResponse sent as built. The server made every field, so FastAPI's validation and
    serialization of the response model, most of a recommendation request's own cost, are skipped; the history,
    often hundreds of movies, is joined from each movie's JSON encoded once (a test holds this to the model's JSON)."""
    items = [{"recommendable": True, "because": None, **item} for item in found.items]
    history = found.catalog.json_list(found.history_rows)
    items = json.dumps(items, ensure_ascii=False)
    body = f'{{"items":{items},"history":{history},"fallback":{json.dumps(found.fallback)}}}'
    return Response(body, media_type="application/json")


class ModelState(BaseModel):
    folder: str | None = Field(description="The model folder (a symlink resolved) the live model was loaded from.")
    version: str = Field(description="The start of its weights' SHA-256.")
    trainedAt: str | None = Field(None, description="When its weights were written (UTC).")
    validNdcg10: float | None = Field(None, description="The validation NDCG@10 recorded in its folder.")
    loadedAt: str = Field(description="When it went live (UTC).")


class Refusal(BaseModel):
    at: str
    folder: str
    reason: str


class Health(BaseModel):
    status: str
    movies: int
    users: int
    rating_aware: bool = Field(description="Whether the model reads ratings and honours 'liked'.")
    time_aware: bool = Field(description="Whether the model reads the time between a known user's interactions.")
    genre_aware: bool = Field(False, description="Whether the model reads each movie's genres.")
    year_aware: bool = Field(False, description="Whether the model reads each movie's release year.")
    store: str | None = Field(None, description="The event store recommendations read histories from, if any.")
    model: ModelState = Field(description="The live model.")
    refused: Refusal | None = Field(None, description="The last model refused since the live one went live.")
    watchS: float | None = Field(None, description="Seconds between looks at the model folder for a new model "
                                                   "(--watch); None: reloads only when asked.")
    process: int = Field(description="The id of the process that answered: one of the workers, when the server "
                                     "runs several (--workers).")


class Reloaded(BaseModel):
    status: str = Field(description="'live': the reloaded model answers the next requests.")
    model: ModelState


MAX_EVENTS = 10_000  # events in one POST /events
MAX_CLOCK_SKEW_S = 86_400  # how far in the future an event's timestamp may be: clocks differ, by less than a day


class EventIn(BaseModel):
    """Something a user did: watched (and perhaps rated) a movie."""

    model_config = ConfigDict(extra="forbid")
    userId: int = Field(**ID_RANGE)
    movieId: int = Field(**ID_RANGE)
    rating: float | None = Field(None, ge=0, le=5, allow_inf_nan=False, description="0-5 stars; none: not rated.")
    timestamp: int | None = Field(None, ge=0, le=2**53, description="When it happened, Unix seconds (default: when "
                                  "the server received it); at most a day ahead of the server's clock.")
    eventId: str | None = Field(None, min_length=1, max_length=200, description="The client's key for this event: "
                                "sending it again (a retry) stores nothing and counts as a duplicate.")


EventBatch = Annotated[list[EventIn], Field(min_length=1, max_length=MAX_EVENTS)]


class EventsWritten(BaseModel):
    stored: int
    duplicates: int = Field(description="Events not stored because the user already has one with that eventId.")


class StoredEvent(BaseModel):
    movieId: int
    rating: float | None
    timestamp: int
    receivedAt: float
    eventId: str | None


class NewMovie(BaseModel):
    model_config = ConfigDict(extra="forbid")
    movieId: int = Field(**ID_RANGE)
    title: str = Field(min_length=1, max_length=300, description="As in MovieLens, e.g. 'Heat (1995)'.")
    genres: list[Annotated[str, Field(min_length=1, max_length=50, pattern=r"^[^|]+$")]] = Field(
        default_factory=list, max_length=30)


class Erased(BaseModel):
    userId: int
    events: int = Field(description="How many events were erased with the user.")


class Ready(BaseModel):
    status: str
    store: str | None = None


class ErrorBody(BaseModel):
    detail: str | list[dict[str, Any]]  # a message, or pydantic's list of field errors
    candidates: list[Movie] | None = None
