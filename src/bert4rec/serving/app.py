"""REST API and web page over a Recommender (FastAPI + uvicorn).

Requests for model scores are micro-batched: a single worker thread owns the model; whenever it is free it takes
every request waiting in the queue (up to ``max_batch``) and scores them in one forward pass. At low load a request
is scored at once; under load, batches grow and throughput grows with the number of clients.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import math
from dataclasses import dataclass
from importlib import resources
from typing import Annotated

import numpy as np
from fastapi import FastAPI, HTTPException, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse

from bert4rec.errors import AmbiguousTitleError, Bert4RecError, UnknownItemError, UnknownUserError
from bert4rec.serving.recommender import MAX_K, Filters, Recommender, history_types
from bert4rec.serving.schemas import (
    INT64,
    ErrorBody,
    Health,
    Movie,
    RecommendationRequest,
    RecommendationResponse,
    WatchedByTitle,
)

MAX_BODY_BYTES = 2 * 1024 * 1024


# ------------------------------------------------------------------------------------------------ batching


@dataclass
class _Job:
    rows: np.ndarray
    types: np.ndarray | None  # packed token types of the history
    k: int
    filters: Filters
    explain: bool
    future: asyncio.Future


class MicroBatcher:
    """Scores queued requests together on one worker thread."""

    def __init__(self, recommender: Recommender, max_batch: int = 64):
        self.recommender = recommender
        self.max_batch = max_batch
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="bert4rec-model")
        self.batch_sizes: list[int] = []
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def recommend(self, rows: np.ndarray, types: np.ndarray | None, k: int, filters: Filters,
                        explain: bool):
        if self._task is None:  # served without the lifespan hook (some test clients): start on first use
            self.start()
        future = asyncio.get_running_loop().create_future()
        await self.queue.put(_Job(rows, types, k, filters, explain, future))
        return await future

    def _work(self, jobs: list[_Job]) -> list:
        scores = self.recommender.score_histories([job.rows for job in jobs], [job.types for job in jobs],
                                                  [job.filters.liked for job in jobs])
        results = []
        for job, row in zip(jobs, scores, strict=True):
            try:
                results.append(self.recommender.select(row, job.rows, job.k, job.filters, job.explain))
            except Bert4RecError as exc:
                results.append(exc)
        return results

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self.queue.get()]
            while len(jobs) < self.max_batch and not self.queue.empty():
                jobs.append(self.queue.get_nowait())
            self.batch_sizes.append(len(jobs))
            try:
                results = await loop.run_in_executor(self.executor, self._work, jobs)
            except Exception as exc:  # surfaced to each waiting request as an error, never kills the worker
                results = [exc] * len(jobs)
            for job, result in zip(jobs, results, strict=True):
                if job.future.done():
                    continue
                if isinstance(result, Exception):
                    job.future.set_exception(result)
                else:
                    job.future.set_result(result)


# ------------------------------------------------------------------------------------------------ app


class BodyLimit:
    """Reject request bodies over ``limit`` bytes with 413, whether or not Content-Length is sent."""

    def __init__(self, app, limit: int = MAX_BODY_BYTES):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            return await JSONResponse({"detail": f"request body over {self.limit:,} bytes"}, 413)(scope, receive,
                                                                                                  send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise HTTPException(413, f"request body over {self.limit:,} bytes")
            return message

        return await self.app(scope, limited_receive, send)


def _history(recommender: Recommender, request: RecommendationRequest) -> tuple[np.ndarray, np.ndarray]:
    """Catalogue rows of the request's history and their token types (ratings and time gaps, where given)."""
    rows, kept = [], []
    known = recommender.catalog.row_of_id
    for entry in request.history:
        if isinstance(entry, WatchedByTitle):
            rows.append(recommender.catalog.match(entry.title))
        elif entry.movieId in known.index:
            rows.append(int(known[entry.movieId]))
        elif not request.ignore_unknown:
            raise UnknownItemError(f"unknown movie id {entry.movieId} (not in this model's catalogue)")
        else:
            continue
        kept.append(entry)
    types = history_types(len(rows), [e.rating for e in kept], [e.timestamp for e in kept])
    return np.asarray(rows, dtype=np.int64), types


def create_app(recommender: Recommender, max_batch: int = 64) -> FastAPI:
    """The FastAPI app: catalogue search, recommendations (micro-batched) and the web page."""
    batcher = MicroBatcher(recommender, max_batch)

    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="bert4rec", version="1", lifespan=lifespan,
                  description="BERT4Rec movie recommendations: search the catalogue, recommend after a history.")
    app.state.batcher = batcher
    app.add_middleware(BodyLimit)
    _add_error_handlers(app)
    _add_catalogue_routes(app, recommender)
    _add_recommendation_routes(app, recommender, batcher)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return resources.files("bert4rec.serving").joinpath("web/index.html").read_text(encoding="utf-8")

    return app


ERROR_RESPONSES = {404: {"model": ErrorBody}, 413: {"model": ErrorBody}, 422: {"model": ErrorBody}}


def _json_safe(value):
    """``value`` with every NaN or infinite float replaced by its name, which strict JSON can carry."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


def _add_error_handlers(app: FastAPI) -> None:
    """Expected failures become a 4xx whose body says what was wrong."""

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        # Python's JSON parser accepts NaN and Infinity; echoing them back as the offending input must not fail.
        return JSONResponse({"detail": _json_safe(jsonable_encoder(exc.errors()))}, 422)

    @app.exception_handler(AmbiguousTitleError)
    async def ambiguous(request: Request, exc: AmbiguousTitleError):
        return JSONResponse({"detail": str(exc), "candidates": exc.candidates}, 422)

    @app.exception_handler(UnknownUserError)
    async def unknown_user(request: Request, exc: UnknownUserError):
        return JSONResponse({"detail": str(exc)}, 404)

    @app.exception_handler(Bert4RecError)
    async def bad_request(request: Request, exc: Bert4RecError):
        return JSONResponse({"detail": str(exc)}, 422)


def _add_catalogue_routes(app: FastAPI, recommender: Recommender) -> None:
    catalog = recommender.catalog

    @app.get("/health", response_model=Health)
    async def health() -> Health:
        return Health(status="ok", movies=len(catalog), users=len(recommender.user_index),
                      rating_aware=recommender.model.config.rating_aware,
                      time_aware=recommender.model.config.time_aware)

    @app.get("/movies", response_model=list[Movie], responses=ERROR_RESPONSES)
    async def search_movies(q: Annotated[str, Query(max_length=200)] = "",
                            limit: Annotated[int, Query(ge=1, le=100)] = 10) -> list[dict]:
        """Title search, forgiving about case, accents, articles and typos; empty q lists the most popular."""
        if not q.strip():
            return catalog.describe(np.argsort(-catalog.popularity, kind="stable")[:limit])
        return catalog.search(q, limit)

    @app.get("/movies/{movieId}", response_model=Movie, responses=ERROR_RESPONSES)
    async def get_movie(movieId: Annotated[int, Path(**INT64)]) -> dict:
        if movieId not in catalog.row_of_id.index:
            raise HTTPException(404, f"unknown movie id {movieId}")
        return catalog.describe(np.array([catalog.row_of_id[movieId]]))[0]


def _add_recommendation_routes(app: FastAPI, recommender: Recommender, batcher: MicroBatcher) -> None:
    @app.post("/recommendations", response_model=RecommendationResponse, responses=ERROR_RESPONSES)
    async def recommend(request: RecommendationRequest) -> dict:
        filters = Filters(request.exclude_seen, None, request.exclude, request.genres, request.year_min,
                          request.year_max, request.liked)
        recommender.check_request(request.k, filters)
        rows, types = _history(recommender, request)
        if len(rows) == 0:
            return recommender.recommend_rows(rows, request.k, filters).to_dict()  # popularity, no model call
        return (await batcher.recommend(rows, types, request.k, filters, request.explain)).to_dict()

    @app.get("/users/{userId}/recommendations", response_model=RecommendationResponse, responses=ERROR_RESPONSES)
    async def recommend_user(userId: Annotated[int, Path(**INT64)],
                             k: Annotated[int, Query(ge=1, le=MAX_K)] = 10,
                             liked: Annotated[bool, Query(description="Rating-aware models only: movies the user "
                                                                      "would rate 4 stars or more.")] = False) -> dict:
        filters = Filters(liked=liked)
        recommender.check_request(k, filters)
        rows, types = recommender.user_history(userId), recommender.user_types(userId)
        return (await batcher.recommend(rows, types, k, filters, True)).to_dict()


def serve(model_dir: str, host: str = "127.0.0.1", port: int = 8000, device: str = "cpu",
          threads: int | None = None) -> None:
    import torch
    import uvicorn

    if threads:
        torch.set_num_threads(threads)  # the model's share of the cores; the event loop needs the rest
    app = create_app(Recommender.load(model_dir, device))
    gc.freeze()  # the loaded model and catalogue never die: keep them out of every garbage collection
    uvicorn.run(app, host=host, port=port, log_level="info")
