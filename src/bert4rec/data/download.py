"""Download MovieLens release zips from GroupLens into a cache, safely.

A download goes to a temporary file beside its destination, is checked (byte count against Content-Length, the
MD5 that GroupLens publishes beside each zip when the server has it, and that the zip opens), and only then is
renamed into place: an interrupted or corrupt download never leaves a file that a later run would use.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from platformdirs import user_cache_dir

from bert4rec import progress as bars
from bert4rec.data.releases import DATA_HOME_ENV, RELEASES
from bert4rec.errors import DownloadError

BASE_URL = "https://files.grouplens.org/datasets/movielens"
BASE_URL_ENV = "BERT4REC_BASE_URL"
CACHE_DIR_ENV = "BERT4REC_CACHE_DIR"
CHUNK = 1 << 20
TIMEOUT_S = 60


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """The download cache: the argument, else ``$BERT4REC_CACHE_DIR``, else the user's cache folder."""
    chosen = override or os.environ.get(CACHE_DIR_ENV) or user_cache_dir("bert4rec")
    return Path(chosen).expanduser()


def release_url(name: str, base_url: str | None = None) -> str:
    base = base_url or os.environ.get(BASE_URL_ENV) or BASE_URL
    return f"{base.rstrip('/')}/{name}.zip"


def _published_md5(url: str) -> str | None:
    """GroupLens publishes ``<zip>.md5``; None when the server has no such file."""
    try:
        with urllib.request.urlopen(f"{url}.md5", timeout=TIMEOUT_S) as response:
            text = response.read(4096).decode("ascii", errors="replace")
    except (urllib.error.URLError, OSError):
        return None
    token = text.split()[0] if text.split() else ""
    return token.lower() if len(token) == 32 else None


def _stream(url: str, out, label: str, progress: bool) -> tuple[int, int | None, str]:
    """Copy the body of ``url`` into ``out``; return bytes written, the announced length, and the MD5."""
    digest = hashlib.md5(usedforsecurity=False)
    written = 0
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        with bars.bar(None, progress, total=expected, unit="B", unit_scale=True, desc=label) as bar:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                digest.update(chunk)
                written += len(chunk)
                bar.update(len(chunk))
    return written, expected, digest.hexdigest()


def download(name: str, cache: str | os.PathLike | None = None, base_url: str | None = None,
             progress: bool = True, force: bool = False) -> Path:
    """Fetch release ``name`` into the cache (unless already there) and return the zip's path."""
    if name not in RELEASES:
        raise DownloadError(f"unknown MovieLens release '{name}' (known: {', '.join(RELEASES)})")
    folder = cache_dir(cache)
    destination = folder / f"{name}.zip"
    if destination.is_file() and not force:
        return destination
    url = release_url(name, base_url)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create cache folder {folder} ({exc.strerror})") from None
    handle, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(handle, "wb") as out:
            written, expected, md5 = _stream(url, out, name, progress)
            out.flush()
            os.fsync(out.fileno())
        if expected is not None and written != expected:
            raise DownloadError(f"{url}: connection cut after {written:,} of {expected:,} bytes; nothing was kept")
        published = _published_md5(url)
        if published is not None and published != md5:
            raise DownloadError(f"{url}: MD5 {md5} does not match the published {published}; nothing was kept")
        try:
            with zipfile.ZipFile(tmp) as archive:
                archive.namelist()
        except zipfile.BadZipFile:
            raise DownloadError(f"{url}: the downloaded file is not a zip; nothing was kept") from None
        os.replace(tmp, destination)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DownloadError(
            f"cannot download {url} ({reason}). Without network access, put {name}.zip or its unpacked folder "
            f"in a folder and set {DATA_HOME_ENV} to it, or place {name}.zip in {folder}"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    return destination


def fetch(name: str) -> Path:
    """The loader's hook: the cached zip of ``name``, downloading it when needed."""
    return download(name)
