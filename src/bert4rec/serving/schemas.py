"""The REST API's request and response bodies (pydantic), with the limits every request is checked against."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from bert4rec.serving.recommender import MAX_K

MAX_HISTORY = 10_000
INT64 = {"ge": -(2**63), "le": 2**63 - 1}


class Watched(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rating: float | None = Field(None, ge=0, le=5, allow_inf_nan=False,
                                 description="0-5 stars; read by rating-aware models.")
    timestamp: int | None = Field(None, ge=0, le=2**53, description="When it was watched, Unix seconds; read by "
                                  "time-aware models when every movie of the history has one.")


class WatchedById(Watched):
    """A watched movie by movieId, optionally with a rating and a timestamp."""

    movieId: int = Field(**INT64)


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
    exclude: list[Annotated[int, Field(**INT64)]] | None = Field(None, max_length=MAX_HISTORY)
    ignore_unknown: bool = Field(False, description="Skip unknown movieIds instead of failing.")
    liked: bool = Field(False, description="Rating-aware models only: movies the user would rate 4 stars or more.")
    explain: bool = Field(True, description="Add a 'because you watched' movie to each recommendation.")


class Movie(BaseModel):
    movieId: int
    title: str
    year: int | None
    genres: list[str]


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


class Health(BaseModel):
    status: str
    movies: int
    users: int
    rating_aware: bool = Field(description="Whether the model reads ratings and honours 'liked'.")
    time_aware: bool = Field(description="Whether the model reads the time between a known user's interactions.")


class ErrorBody(BaseModel):
    detail: str | list[dict[str, Any]]  # a message, or pydantic's list of field errors
    candidates: list[Movie] | None = None
