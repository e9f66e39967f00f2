"""The live model, and replacing it while the server runs.

A new model is loaded beside the live one (on a worker thread, so requests keep being answered), checked, and
swapped in between two requests. A request keeps the model it started with to the end; the next one gets the new
one. A candidate that fails to load, or whose recorded validation NDCG@10 is worse than the live model's by more
than the allowed drop, is refused: the live model stays, and the refusal is logged and shown by ``/health``.

The server is given a folder path; pointing it at a symlink (``models/current -> models/2026-12-01``) that a
retrain flips once a new folder is complete lets ``--watch`` pick up each new model, never a half-written one.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool

from bert4rec.errors import Bert4RecError
from bert4rec.evaluation.promotion import DEFAULT_MAX_DROP, recorded_validation, refusal
from bert4rec.files import WEIGHTS_FILE, recorded_digest

if TYPE_CHECKING:  # the CLI reads this module's defaults without loading PyTorch
    import torch

    from bert4rec.serving.recommender import Recommender

log = logging.getLogger("bert4rec.serving")


class RefusedModelError(Bert4RecError):
    """A model the server would not swap in; the live model stays."""


@dataclass(frozen=True)
class ModelInfo:
    folder: str  # the folder the path resolved to when it was loaded
    version: str  # the start of model.safetensors' recorded SHA-256, or its size and time where none is recorded
    trained_at: str  # when model.safetensors was written (UTC)
    valid_ndcg10: float | None  # the validation NDCG@10 recorded in the folder, if any

    def to_dict(self) -> dict:
        return {"folder": self.folder, "version": self.version, "trainedAt": self.trained_at,
                "validNdcg10": self.valid_ndcg10}


def model_info(folder: Path) -> ModelInfo:
    """What identifies the model in ``folder`` (a symlink is followed) and how well it did on validation."""
    real, version, weights = _identified(folder)
    trained = dt.datetime.fromtimestamp(weights.st_mtime, dt.timezone.utc).isoformat(timespec="seconds")
    return ModelInfo(str(real), version, trained, recorded_validation(real))


def _identified(folder: Path) -> tuple[Path, str, os.stat_result]:
    """The folder a path resolves to, the version of its weights, and their file's stat."""
    real = Path(os.path.realpath(folder))
    try:
        weights = (real / WEIGHTS_FILE).stat()
    except OSError as exc:
        raise RefusedModelError(f"{folder}: no model ({WEIGHTS_FILE}: {exc.strerror})") from None
    digest = recorded_digest(real, WEIGHTS_FILE)
    return real, digest[:12] if digest else f"{weights.st_size}-{weights.st_mtime_ns}", weights


class LiveModel:
    """The model requests are answered with, replaceable by :meth:`reload` without stopping the server."""

    def __init__(self, recommender: Recommender, folder: str | Path | None = None,
                 device: str | torch.device = "cpu", max_drop: float = DEFAULT_MAX_DROP):
        self.recommender, self.device, self.max_drop = recommender, device, max_drop
        self.path = Path(folder) if folder is not None else None  # None: built in memory, nothing to reload
        self.info = model_info(self.path) if self.path is not None else None
        self.loaded_at = _now()
        self.refusal: dict | None = None  # the last refused candidate, until a model goes live
        self.on_swap: list[Callable[[Recommender], None]] = []
        self._refused: tuple[str, str] | None = None  # (folder, version) of the last refused candidate
        self._lock = asyncio.Lock()

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device = "cpu",
             max_drop: float = DEFAULT_MAX_DROP) -> LiveModel:
        from bert4rec.serving.recommender import Recommender

        return cls(Recommender.load(folder, device), folder, device, max_drop)

    def changed(self) -> bool:
        """Whether the path now holds a model other than the live one and the last one refused (what ``--watch``
        polls)."""
        now = self._identity()
        return now is not None and now != self._live_identity() and now != self._refused

    def _live_identity(self) -> tuple[str, str] | None:
        return (self.info.folder, self.info.version) if self.info is not None else None

    def _identity(self) -> tuple[str, str] | None:
        if self.path is None:
            return None
        try:  # only what names the model: --watch calls this every few seconds
            real, version, _ = _identified(self.path)
        except RefusedModelError:
            return None  # nothing there at this moment (a folder being replaced): look again later
        return str(real), version

    async def reload(self) -> ModelInfo:
        """Load the model the path holds now and make it live; raise RefusedModelError (the live model staying)
        if it does not load or does worse on validation than allowed. One reload at a time."""
        if self.path is None:
            raise RefusedModelError("this server was given a model, not a model folder: there is nothing to reload")
        async with self._lock:
            self._refused = self._identity()  # until it has gone live
            try:
                info = model_info(self.path)
                recommender = await run_in_threadpool(type(self.recommender).load, self.path, self.device)
                self._check(info)
            except Bert4RecError as exc:
                folder = self._refused[0] if self._refused else str(self.path)
                self.refusal = {"at": _now(), "folder": folder, "reason": str(exc)}
                log.warning("model refused, the live one stays: %s", exc)
                raise RefusedModelError(str(exc)) from None
            for hook in self.on_swap:
                hook(recommender)
            self.recommender, self.info, self.loaded_at = recommender, info, _now()
            self.refusal = self._refused = None
            log.info("model %s (%s) is live", info.folder, info.version)
            return info

    def _check(self, candidate: ModelInfo) -> None:
        reason = refusal(Path(candidate.folder), Path(self.info.folder) if self.info else None, self.max_drop)
        if reason is not None:
            raise RefusedModelError(reason)

    def state(self) -> dict:
        described = self.info.to_dict() if self.info is not None else {"folder": None, "version": "in memory"}
        return {**described, "loadedAt": self.loaded_at}

    async def watch(self, every_s: float) -> None:
        """Reload whenever the path holds a new model, looking every ``every_s`` seconds. A refused model is not
        tried again until the path changes once more."""
        await self._reload_when(self.changed, every_s)

    async def follow(self, told: Callable[[], bool], every_s: float) -> None:
        """Reload when ``told()`` says another worker of this server made a new model live, and the path holds one
        other than this worker's, looking every ``every_s`` seconds."""
        await self._reload_when(lambda: told() and self.changed(), every_s)

    async def _reload_when(self, due: Callable[[], bool], every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            if due():
                with contextlib.suppress(RefusedModelError):  # logged and shown by /health already
                    await self.reload()


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
