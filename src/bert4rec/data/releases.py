"""The MovieLens releases GroupLens publishes, and where a release is found on disk before any download."""

from __future__ import annotations

import os
from pathlib import Path

DATA_HOME_ENV = "BERT4REC_DATA_HOME"

# Release name -> folder name inside the GroupLens zip.
RELEASES: dict[str, str] = {
    "ml-100k": "ml-100k",
    "ml-1m": "ml-1m",
    "ml-10m": "ml-10M100K",
    "ml-20m": "ml-20m",
    "ml-25m": "ml-25m",
    "ml-32m": "ml-32m",
    "ml-latest": "ml-latest",
    "ml-latest-small": "ml-latest-small",
}


def data_home() -> Path | None:
    value = os.environ.get(DATA_HOME_ENV)
    return Path(value).expanduser() if value else None


def find_local_release(name: str, home: Path | None) -> Path | None:
    """A release already on disk in ``home``: an unpacked folder (either name) or the original zip."""
    if home is None:
        return None
    for candidate in (name, RELEASES[name]):
        for path in (home / candidate, home / f"{candidate}.zip"):
            if path.exists():
                return path
    return None
