"""Who may do what, and what operators see: API keys for writes (and, if asked, reads) and for the operator's
actions (reloading the model), Prometheus metrics, and one log line per request.

Keys travel as ``Authorization: Bearer KEY`` and are compared in constant time against every configured key, so
the time a check takes says nothing about how close a guess was.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import HTTPException, Request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

from bert4rec.errors import Bert4RecError
from bert4rec.serving.workers import MULTIPROCESS_ENV

API_KEYS_ENV = "BERT4REC_API_KEYS"  # comma-separated keys that may write (and read)
READ_KEYS_ENV = "BERT4REC_READ_KEYS"  # comma-separated keys that may only read
ADMIN_KEYS_ENV = "BERT4REC_ADMIN_KEYS"  # comma-separated keys that may reload the model (and nothing else)
MIN_KEY_LENGTH = 16
UNPROTECTED = ("/health", "/health/live", "/health/ready")


@dataclass(frozen=True)
class Keys:
    write: tuple[str, ...] = ()
    read: tuple[str, ...] = ()
    reads_need_key: bool = False
    open_writes: bool = False  # anyone may write: a trial on one machine
    admin: tuple[str, ...] = ()

    @classmethod
    def configured(cls, keys_file: str | Path | None = None, reads_need_key: bool = False,
                   open_writes: bool = False) -> Keys:
        """Write keys from ``$BERT4REC_API_KEYS`` and ``keys_file`` (one per line, # comments), read-only keys from
        ``$BERT4REC_READ_KEYS``, admin keys from ``$BERT4REC_ADMIN_KEYS``. A key shorter than MIN_KEY_LENGTH
        characters is refused: it could be guessed."""
        write = _split(os.environ.get(API_KEYS_ENV, ""))
        if keys_file is not None:
            try:
                lines = Path(keys_file).read_text().splitlines()
            except OSError as exc:
                raise Bert4RecError(f"{keys_file}: cannot read the API keys file ({exc.strerror})") from None
            write += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        read = _split(os.environ.get(READ_KEYS_ENV, ""))
        admin = _split(os.environ.get(ADMIN_KEYS_ENV, ""))
        short = [k for k in write + read + admin if len(k) < MIN_KEY_LENGTH]
        if short:
            raise Bert4RecError(f"API keys must be at least {MIN_KEY_LENGTH} characters ({len(short)} shorter); "
                                "make them with e.g. `python -c 'import secrets; print(secrets.token_urlsafe())'`")
        if reads_need_key and not (write or read):
            raise Bert4RecError(f"--read-key needs keys: set {API_KEYS_ENV} or {READ_KEYS_ENV}, or --api-keys-file")
        if open_writes and write:
            raise Bert4RecError("--open-writes and API keys contradict each other: keys protect writes, "
                                "--open-writes lifts that protection")
        return cls(tuple(write), tuple(read), reads_need_key, open_writes, tuple(admin))

    def check(self, request: Request, write: bool) -> None:
        """Raise 401 (no key) or 403 (a key that does not allow this) unless the request may go ahead."""
        if (write and self.open_writes) or (not write and not self.reads_need_key):
            return
        self._require(request, self.write if write else self.write + self.read, "write" if write else "read")

    def check_admin(self, request: Request) -> None:
        """As ``check``, for the operator's actions: only an admin key will do, whatever else is open."""
        if not self.admin:
            raise HTTPException(403, f"no admin key is configured: set {ADMIN_KEYS_ENV} to allow this")
        self._require(request, self.admin, "do this")

    @staticmethod
    def _require(request: Request, allowed: tuple[str, ...], action: str) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise HTTPException(401, "this needs an API key: send 'Authorization: Bearer KEY'",
                                headers={"WWW-Authenticate": "Bearer"})
        if not _matches_any(given.strip(), allowed):
            raise HTTPException(403, f"this API key may not {action}")


def _split(value: str) -> list[str]:
    return [k.strip() for k in value.split(",") if k.strip()]


def _matches_any(given: str, keys: tuple[str, ...]) -> bool:
    # Every key is compared, whatever matched first, so the time taken does not depend on which one (if any) did.
    found = False
    for key in keys:
        found |= hmac.compare_digest(given.encode(), key.encode())
    return found


# ---------------------------------------------------------------------------------------------- metrics


@dataclass
class Metrics:
    """The server's Prometheus metrics, in a registry of its own (one per app, so tests can build many)."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self):
        r = self.registry
        self.requests = Counter("bert4rec_requests", "HTTP requests by route and status", ["method", "route",
                                                                                          "status"], registry=r)
        self.latency = Histogram("bert4rec_request_seconds", "HTTP request latency by route", ["method", "route"],
                                 registry=r, buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5))
        self.batch_size = Histogram("bert4rec_batch_size", "Requests served together by a micro-batch", ["stage"],
                                    registry=r, buckets=(1, 2, 4, 8, 16, 32, 64, 128))
        self.events_stored = Counter("bert4rec_events_stored", "Events written to the store", registry=r)
        self.events_duplicate = Counter("bert4rec_events_duplicate", "Events not stored again (same eventId)",
                                        registry=r)
        self.store_errors = Counter("bert4rec_store_errors", "Store operations that failed", registry=r)

    def exposition(self) -> bytes:
        """What ``/metrics`` answers: this process's metrics, or, in a server of several workers, all of theirs
        summed (prometheus_client's multiprocess mode: each worker writes its values to files of one folder)."""
        if MULTIPROCESS_ENV not in os.environ:
            return generate_latest(self.registry)
        everyone = CollectorRegistry()
        multiprocess.MultiProcessCollector(everyone)
        return generate_latest(everyone)


access_log = logging.getLogger("bert4rec.access")


def configure_access_log(log_format: str) -> None:
    """One line per request on stderr: readable text, or a JSON object per line (``json``)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLines() if log_format == "json" else logging.Formatter("%(asctime)s %(message)s"))
    access_log.handlers[:] = [handler]
    access_log.setLevel(logging.INFO)
    access_log.propagate = False
    # No line of ours names its caller, thread or process: the logging HOWTO's "Optimization" switches keep every
    # record from looking them up (the caller is a walk up the stack), on a path taken by every request.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", {})
        return json.dumps({"time": round(record.created, 3), "level": record.levelname.lower(), **fields})


class Observed:
    """ASGI middleware: count and time each request under its route's template, and log it. Plain ASGI rather than
    an ``@app.middleware`` function, which would wrap every request and response in extra objects and tasks."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = 500

        async def send_and_note(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self._record(scope, status, time.perf_counter() - started)

    def _record(self, scope, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", "unmatched")  # the template: one series per route, not per id
        method = scope["method"]
        self.metrics.requests.labels(method, route, str(status)).inc()
        self.metrics.latency.labels(method, route).observe(seconds)
        if access_log.isEnabledFor(logging.INFO):
            client = scope.get("client")
            fields = {"method": method, "path": scope["path"], "route": route, "status": status,
                      "ms": round(seconds * 1000, 2), "client": client[0] if client else None}
            access_log.info("%s %s %s %.1f ms", method, scope["path"], status, seconds * 1000,
                            extra={"fields": fields})
