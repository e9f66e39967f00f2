"""Micro-batching: requests that arrive while a worker is busy are served together in its next pass.

A :class:`Batcher` owns one worker thread. Whenever the worker is free it takes every job waiting in the queue (up
to ``max_batch``) and runs them in one call. At low load a job runs at once; under load, batches grow and throughput
grows with the number of clients. The server runs two: the store's (many users' histories in one query) and the
model's (many histories in one forward pass), so the model never waits on the database.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bert4rec.errors import Bert4RecError
from bert4rec.serving.recommender import Filters, Recommender


class Batcher:
    """Runs ``work(jobs) -> results`` (one result or exception per job, in order) on its own thread."""

    def __init__(self, work: Callable[[Sequence[Any]], list], max_batch: int = 64, name: str = "batch",
                 on_batch: Callable[[int], None] | None = None):
        self.work = work
        self.max_batch = max_batch
        self.on_batch = on_batch
        self.queue: asyncio.Queue[tuple[Any, asyncio.Future]] = asyncio.Queue()
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"bert4rec-{name}")
        self.batch_sizes: list[int] = []
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, job: Any) -> Any:
        if self._task is None:  # served without the lifespan hook (some test clients): start on first use
            self.start()
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((job, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            waiting = [await self.queue.get()]
            while len(waiting) < self.max_batch and not self.queue.empty():
                waiting.append(self.queue.get_nowait())
            self.batch_sizes.append(len(waiting))
            if self.on_batch is not None:
                self.on_batch(len(waiting))
            jobs = [job for job, _ in waiting]
            try:
                results = await loop.run_in_executor(self.executor, self.work, jobs)
            except Exception as exc:  # surfaced to each waiting request as an error, never kills the worker
                results = [exc] * len(jobs)
            for (_, future), result in zip(waiting, results, strict=True):
                if future.done():  # its client went away
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)


@dataclass
class ScoringJob:
    recommender: Recommender  # the model live when the request arrived: a swap never changes a request's model
    rows: np.ndarray  # catalogue rows of the history, oldest first
    types: np.ndarray | None  # packed token types of the history
    k: int
    filters: Filters
    explain: bool


class MicroBatcher(Batcher):
    """Scores queued histories together: one forward pass of each model for the jobs asking it (one model, except
    for the moment a swap is under way)."""

    def __init__(self, max_batch: int = 64, on_batch: Callable[[int], None] | None = None):
        super().__init__(self._score, max_batch, "model", on_batch)

    async def recommend(self, recommender: Recommender, rows: np.ndarray, types: np.ndarray | None, k: int,
                        filters: Filters, explain: bool):
        return await self.submit(ScoringJob(recommender, rows, types, k, filters, explain))

    def _score(self, jobs: Sequence[ScoringJob]) -> list:
        results: list = [None] * len(jobs)
        for recommender in {id(job.recommender): job.recommender for job in jobs}.values():
            mine = [i for i, job in enumerate(jobs) if job.recommender is recommender]
            scores = recommender.score_histories([jobs[i].rows for i in mine], [jobs[i].types for i in mine],
                                                 [jobs[i].filters.liked for i in mine])
            for i, row in zip(mine, scores, strict=True):
                job = jobs[i]
                try:
                    results[i] = recommender.select(row, job.rows, job.k, job.filters, job.explain)
                except Bert4RecError as exc:
                    results[i] = exc
        return results
