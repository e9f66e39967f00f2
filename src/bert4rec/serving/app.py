"""REST API and web page over a Recommender (FastAPI + uvicorn). Requests for model scores are micro-batched
(``batching.py``); with an event store, the store's routes and user histories come from ``live.py``; the model can
be replaced while the server runs (``swap.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import math
import os
import sys
import tempfile
from dataclasses import asdict, dataclass, replace
from importlib import resources
from typing import Annotated

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from bert4rec.errors import AmbiguousTitleError, Bert4RecError, StoreError, UnknownItemError, UnknownUserError
from bert4rec.serving.access import API_KEYS_ENV, UNPROTECTED, Keys, Metrics, Observed, configure_access_log
from bert4rec.serving.batching import MicroBatcher
from bert4rec.serving.catalog import search_catalogues
from bert4rec.serving.live import AddedMovies, add_live_routes
from bert4rec.serving.recommender import Filters, Recommender, history_types
from bert4rec.serving.schemas import (
    ID_RANGE,
    ErrorBody,
    Health,
    KQuery,
    LikedQuery,
    Movie,
    Ready,
    RecommendationRequest,
    RecommendationResponse,
    Reloaded,
    UserIdPath,
    WatchedByTitle,
    recommendations_body,
)
from bert4rec.serving.swap import DEFAULT_MAX_DROP, LiveModel, RefusedModelError
from bert4rec.serving.workers import (
    FOLLOW_S,
    MULTIPROCESS_ENV,
    SETTINGS_ENV,
    Peers,
    note_startup_failure,
    startup_failure,
)
from bert4rec.store import EventStore

MAX_BODY_BYTES = 2 * 1024 * 1024


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


def create_app(model: Recommender | LiveModel, max_batch: int = 64, store: EventStore | None = None,
               keys: Keys | None = None, watch_s: float | None = None, peers: Peers | None = None) -> FastAPI:
    """The FastAPI app: catalogue search, recommendations (micro-batched), the web page, health and metrics; with a
    ``store``, events in and recommendations that follow them (``live.py``). A LiveModel loaded from a folder can
    be reloaded (``POST /admin/reload``, or every ``watch_s`` seconds when the folder holds a new model). ``peers``:
    the other workers of a server of several processes (``workers.py``)."""
    keys = keys or Keys()
    metrics = Metrics()
    live = model if isinstance(model, LiveModel) else LiveModel(model)
    batcher = MicroBatcher(max_batch, metrics.batch_size.labels("model").observe)

    async def lifespan(app: FastAPI):
        batcher.start()
        loop = asyncio.get_running_loop()
        watchers = [loop.create_task(live.watch(watch_s))] if watch_s else []
        if peers is not None:
            watchers.append(loop.create_task(live.follow(peers.model.received, FOLLOW_S)))
        yield
        for watcher in watchers:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await batcher.stop()
        if store is not None:
            await app.state.history_reader.stop()
            await app.state.event_writer.stop()

    async def may_read(request: Request) -> None:  # async: a plain def would run on a worker thread
        if request.scope["path"] not in UNPROTECTED and request.scope["path"] != "/":
            keys.check(request, write=False)

    # Open reads skip the check altogether: a dependency costs every request a share of its time.
    read_check = [Depends(may_read)] if keys.reads_need_key else []
    app = FastAPI(title="bert4rec", version="1", lifespan=lifespan, dependencies=read_check,
                  description="BERT4Rec movie recommendations: search the catalogue, recommend after a history; "
                              "with an event store, record what users do and recommend from it.")
    app.state.batcher, app.state.metrics, app.state.live, app.state.store = batcher, metrics, live, store
    app.add_middleware(BodyLimit)
    app.add_middleware(Observed, metrics=metrics)
    _add_error_handlers(app, metrics)
    added = None
    if store is not None:
        added = add_live_routes(app, live, batcher, store, keys, metrics, max_batch, peers)
    _add_catalogue_routes(app, live, added)
    _add_recommendation_routes(app, live, batcher, user_route=store is None)
    _add_operator_routes(app, live, store, metrics, keys, watch_s, peers)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return resources.files("bert4rec.serving").joinpath("web/index.html").read_text(encoding="utf-8")

    return app


ERROR_RESPONSES = {404: {"model": ErrorBody}, 413: {"model": ErrorBody}, 422: {"model": ErrorBody}}
RETRY_AFTER_S = 1  # what a client told "store unavailable" should wait before retrying


def _json_safe(value):
    """``value`` with every NaN or infinite float replaced by its name, which strict JSON can carry."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


def _add_error_handlers(app: FastAPI, metrics: Metrics) -> None:
    """Expected failures become a 4xx whose body says what was wrong; a store that cannot answer, a 503."""

    @app.exception_handler(StoreError)
    async def store_unavailable(request: Request, exc: StoreError):
        metrics.store_errors.inc()
        return JSONResponse({"detail": f"the event store is unavailable: {exc}"}, 503,
                            headers={"Retry-After": str(RETRY_AFTER_S)})

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


def _add_catalogue_routes(app: FastAPI, live: LiveModel, added: AddedMovies | None) -> None:
    @app.get("/movies", response_model=list[Movie], responses=ERROR_RESPONSES)
    async def search_movies(q: Annotated[str, Query(max_length=200)] = "",
                            limit: Annotated[int, Query(ge=1, le=100)] = 10) -> list[dict]:
        """Title search, forgiving about case, accents, articles and typos; empty q lists the most popular."""
        catalog = live.recommender.catalog
        if not q.strip():
            return catalog.describe(np.argsort(-catalog.popularity, kind="stable")[:limit])
        if added is None:
            return catalog.search(q, limit)
        await added.catch_up()
        found = search_catalogues([catalog, added.catalog], q, limit)
        return [dict(m, recommendable=m["movieId"] in catalog.row_of_id.index) for m in found]

    @app.get("/movies/{movieId}", response_model=Movie, responses=ERROR_RESPONSES)
    async def get_movie(movieId: Annotated[int, Path(**ID_RANGE)]) -> dict:
        catalog = live.recommender.catalog
        if movieId in catalog.row_of_id.index:
            return catalog.describe(np.array([catalog.row_of_id[movieId]]))[0]
        if added is not None:
            await added.catch_up()
            if (movie := added.describe(movieId)) is not None:
                return movie
        raise HTTPException(404, f"unknown movie id {movieId}")


def _add_recommendation_routes(app: FastAPI, live: LiveModel, batcher: MicroBatcher, user_route: bool) -> None:
    # Each request takes the live model once, at its start, and keeps it to the end, even if a swap comes between.
    @app.post("/recommendations", response_model=RecommendationResponse, responses=ERROR_RESPONSES)
    async def recommend(request: RecommendationRequest) -> Response:
        recommender = live.recommender
        filters = Filters(request.exclude_seen, None, request.exclude, request.genres, request.year_min,
                          request.year_max, request.liked)
        recommender.check_request(request.k, filters)
        rows, types = _history(recommender, request)
        if len(rows) == 0:  # popularity, no model call
            return recommendations_body(recommender.recommend_rows(rows, request.k, filters))
        return recommendations_body(await batcher.recommend(recommender, rows, types, request.k, filters,
                                                             request.explain))

    if not user_route:
        return

    @app.get("/users/{userId}/recommendations", response_model=RecommendationResponse, responses=ERROR_RESPONSES)
    async def recommend_user(userId: UserIdPath, k: KQuery = 10, liked: LikedQuery = False) -> Response:
        recommender = live.recommender
        filters = Filters(liked=liked)
        recommender.check_request(k, filters)
        rows, types = recommender.user_history(userId), recommender.user_types(userId)
        return recommendations_body(await batcher.recommend(recommender, rows, types, k, filters, True))


def _add_operator_routes(app: FastAPI, live: LiveModel, store: EventStore | None, metrics: Metrics, keys: Keys,
                         watch_s: float | None, peers: Peers | None) -> None:
    @app.get("/health", response_model=Health)
    async def health() -> Health:
        recommender, config = live.recommender, live.recommender.model.config
        return Health(status="ok", movies=len(recommender.catalog), users=len(recommender.user_index),
                      rating_aware=config.rating_aware, time_aware=config.time_aware,
                      genre_aware=config.genre_aware, year_aware=config.year_aware,
                      store=store.name if store else None, model=live.state(), refused=live.refusal, watchS=watch_s,
                      process=os.getpid())

    async def may_administer(request: Request) -> None:
        keys.check_admin(request)

    @app.post("/admin/reload", response_model=Reloaded, dependencies=[Depends(may_administer)],
              responses={status: {"model": ErrorBody} for status in (401, 403, 409)})
    async def reload() -> dict:
        """Load the model the server's model folder holds now and make it live, between two requests; a model that
        fails to load or does worse on validation than allowed is refused (409) and the live one stays. With
        several workers, the others load it within a second."""
        try:
            await live.reload()
        except RefusedModelError as exc:
            raise HTTPException(409, f"model refused, the live one stays: {exc}") from None
        if peers is not None:
            peers.model.send()
        return {"status": "live", "model": live.state()}

    @app.get("/health/live", response_model=Ready)
    async def alive() -> dict:
        """The process answers."""
        return {"status": "ok"}

    @app.get("/health/ready", response_model=Ready, responses={503: {"model": ErrorBody}})
    async def ready() -> dict:
        """The model is loaded and the store, if any, answers: ready for traffic."""
        if store is not None:
            await run_in_threadpool(store.ping)
        return {"status": "ok", "store": store.name if store else None}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> PlainTextResponse:
        """Prometheus metrics: requests and latency per route, micro-batch sizes, events stored, store errors."""
        return PlainTextResponse(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


LOOPBACK = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class ServeSettings:
    """What ``bert4rec serve`` was asked for: each worker of a server of several processes builds its app from it."""

    model_dir: str
    device: str = "cpu"
    threads: int | None = None
    db: str | None = None
    api_keys_file: str | None = None
    open_writes: bool = False
    read_key: bool = False
    log_format: str = "text"
    watch_s: float | None = None
    max_drop: float = DEFAULT_MAX_DROP
    workers: int = 1
    shared_dir: str | None = None  # where the workers of one server leave each other signals (set by serve)


def serve(model_dir: str, host: str = "127.0.0.1", port: int = 8000, device: str = "cpu",
          threads: int | None = None, db: str | None = None, api_keys_file: str | None = None,
          open_writes: bool = False, read_key: bool = False, log_format: str = "text", watch_s: float | None = None,
          max_drop: float = DEFAULT_MAX_DROP, workers: int = 1) -> None:
    import uvicorn

    settings = ServeSettings(str(model_dir), device, threads, db, None if api_keys_file is None else str(api_keys_file),
                             open_writes, read_key, log_format, watch_s, max_drop, workers)
    if open_writes and host not in LOOPBACK:
        raise Bert4RecError(f"--open-writes lets anyone write, so it listens on 127.0.0.1 only, not {host}")
    if workers < 1:
        raise Bert4RecError(f"--workers is a number of processes, at least 1 (not {workers})")
    app = build_app(settings)  # every mistake shows here, once, rather than in each worker
    if workers == 1:
        gc.freeze()  # the loaded model and catalogue never die: keep them out of every garbage collection
        uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)  # ours logs each request once
        return
    if app.state.store is not None:
        app.state.store.close()
    del app  # each worker loads its own
    with tempfile.TemporaryDirectory(prefix="bert4rec-serve-") as shared:
        metrics_dir = os.path.join(shared, "metrics")
        os.mkdir(metrics_dir)
        environment = {SETTINGS_ENV: json.dumps(asdict(replace(settings, shared_dir=shared))),
                       MULTIPROCESS_ENV: metrics_dir}
        with _environment(environment):  # the workers are new processes: they inherit it
            uvicorn.run(f"{__name__}:worker_app", factory=True, workers=workers, host=host, port=port,
                        log_level="info", access_log=False)
        if (failure := startup_failure(shared)) is not None:
            raise Bert4RecError(f"a worker could not start, so the server stopped: {failure}")


def build_app(settings: ServeSettings) -> FastAPI:
    """The app ``settings`` ask for, its model loaded and its store opened; a Bert4RecError says what is wrong."""
    import torch

    keys = Keys.configured(settings.api_keys_file, settings.read_key, settings.open_writes)
    if settings.watch_s is not None and not settings.watch_s > 0:
        raise Bert4RecError(f"--watch takes the seconds between looks, above 0 (not {settings.watch_s})")
    if settings.db is not None and not keys.write and not settings.open_writes:
        raise Bert4RecError(f"a server with an event store takes writes: give API keys ({API_KEYS_ENV} or "
                            "--api-keys-file), or --open-writes to try it on this machine only")
    store = EventStore.open(settings.db) if settings.db is not None else None
    threads = settings.threads or (max(1, (os.cpu_count() or 1) // settings.workers) if settings.workers > 1
                                   else None)
    if threads:
        torch.set_num_threads(threads)  # the model's share of the cores; the event loop needs the rest
    peers = Peers(settings.shared_dir) if settings.shared_dir is not None else None
    try:
        live = LiveModel.load(settings.model_dir, settings.device, settings.max_drop)
    except Bert4RecError:
        if store is not None:
            store.close()
        raise
    app = create_app(live, store=store, keys=keys, watch_s=settings.watch_s, peers=peers)
    configure_access_log(settings.log_format)
    return app


def worker_app() -> FastAPI:
    """The app of one worker of a server of several processes: uvicorn calls this in each worker it starts."""
    from uvicorn.config import STARTUP_FAILURE

    settings = ServeSettings(**json.loads(os.environ[SETTINGS_ENV]))
    try:
        app = build_app(settings)
    except Bert4RecError as exc:  # e.g. the store went away since the parent checked
        logging.getLogger("uvicorn.error").error("a worker could not start: %s", exc)
        if settings.shared_dir is not None:
            note_startup_failure(settings.shared_dir, str(exc))
        sys.exit(STARTUP_FAILURE)  # uvicorn then stops the server rather than start the worker again and again
    gc.freeze()
    return app


@contextlib.contextmanager
def _environment(values: dict[str, str]):
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
