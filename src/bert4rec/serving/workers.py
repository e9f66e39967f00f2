"""A server of several processes (``bert4rec serve --workers N``): what its workers share and how they tell each
other what changed.

uvicorn starts the workers; each one builds its own app (model, micro-batcher, store connections) from the settings
the parent leaves in the environment, and they take turns accepting connections on one socket. What one worker
changes, the others must see:

- events and erasures live in the store, which every worker reads at request time: nothing to do;
- a model made live by ``POST /admin/reload`` on one worker: it replaces a signal file, and the others, looking
  for a change of it every FOLLOW_S seconds, load the model too (``--watch`` needs nothing: every worker watches);
- a movie added by ``POST /movies``: likewise, and the others read the added movies again before their next
  search;
- metrics: prometheus_client's multiprocess mode, each worker writing its values to files of a folder that
  ``/metrics`` reads whole.

A worker that cannot build its app stops the server; it leaves the reason in the shared folder, so that ``serve``
fails with it instead of returning as if the server had been stopped on purpose.
"""

from __future__ import annotations

import time
from pathlib import Path

from bert4rec.files import atomic_write_text

SETTINGS_ENV = "BERT4REC_SERVE_SETTINGS"  # the parent's settings, as JSON, for each worker to build its app from
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client reads it when imported: set before workers start
FOLLOW_S = 0.5  # how often a worker looks whether another made a new model live


class Signal:
    """A file that one worker replaces to tell the others something changed. Each worker remembers the file it
    last saw; looking again is one ``stat``, cheap enough to do before every search."""

    def __init__(self, path: Path):
        self.path = path
        self._seen = self._stamp()

    def _stamp(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return stat.st_ino, stat.st_mtime_ns  # a replaced file is a new inode, even within the clock's resolution

    def send(self) -> None:
        atomic_write_text(self.path, f"{time.time()}\n")  # a new file renamed over the old: a new inode
        self._seen = self._stamp()  # the sender already knows

    def received(self) -> bool:
        """Whether the file changed since this worker last looked (or sent)."""
        stamp = self._stamp()
        if stamp == self._seen:
            return False
        self._seen = stamp
        return True


STARTUP_FAILURE_FILE = "startup-failure"  # what a worker that could not start left for the parent to report


def note_startup_failure(folder: str | Path, message: str) -> None:
    """A worker could not build its app: say why where the parent, which uvicorn returns to, will look."""
    atomic_write_text(Path(folder) / STARTUP_FAILURE_FILE, message)


def startup_failure(folder: str | Path) -> str | None:
    """Why a worker of this server could not start, or None if every one did."""
    try:
        return (Path(folder) / STARTUP_FAILURE_FILE).read_text()
    except FileNotFoundError:
        return None


class Peers:
    """The other workers of this server, as one worker sees them: the signals it sends and looks for."""

    def __init__(self, folder: str | Path):
        self.model = Signal(Path(folder) / "model-live")
        self.movies = Signal(Path(folder) / "movies-added")
