"""The files bert4rec writes: their names, atomic writes (readers see the old content or the new, never a
half-written file) and the versioned JSON documents that say what wrote them.

A model folder holds:
    config.json, model.safetensors   the model (the best by validation NDCG@10, or the last without validation)
    dataset/                          the prepared dataset it was trained on (see below)
    train_config.json                 the training settings, with the recipe and the options that overrode it
    checkpoint.pt                     the last finished epoch, for --resume (tensors and plain values only)
    history.jsonl, curves.png         per-epoch loss, validation metrics and seconds
    metrics.json                      what `bert4rec evaluate` measured, per split
    model.onnx                        written by `bert4rec export --onnx`
    digests.json                      the SHA-256 of config.json, model.safetensors and checkpoint.pt

A prepared dataset folder holds interactions.parquet, movies.parquet, vocab.json, stats.json and a digests.json
of all four.

Loading checks each of those files against its recorded SHA-256 and names the one that changed: a format can
check its own structure (safetensors checks shapes), not that the numbers are the ones written. A folder from a
bert4rec that recorded no digests still loads, with a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from bert4rec.errors import Bert4RecError, ChangedFileError

# A model folder
MODEL_CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
DATASET_DIR = "dataset"
TRAIN_CONFIG_FILE = "train_config.json"
CHECKPOINT_FILE = "checkpoint.pt"
HISTORY_FILE = "history.jsonl"
CURVES_FILE = "curves.png"
METRICS_FILE = "metrics.json"
ONNX_FILE = "model.onnx"
SNAPSHOTS_DIR = "snapshots"  # the kept weights of the last validations, each a model folder (TrainConfig.average_last)
# A prepared dataset folder
INTERACTIONS_FILE = "interactions.parquet"
MOVIES_FILE = "movies.parquet"
VOCAB_FILE = "vocab.json"
STATS_FILE = "stats.json"
PREPARED_FILES = (INTERACTIONS_FILE, MOVIES_FILE, VOCAB_FILE, STATS_FILE)
# Either folder
DIGESTS_FILE = "digests.json"
DIGESTS_VERSION = 1


def atomic_write(path: Path, write: Callable[[Path], None], digest: bool = False) -> None:
    """Call ``write(tmp)`` on a temporary path beside ``path``, flush it to disk, then rename it over ``path``.
    With ``digest``, also record the new content's SHA-256 in the folder's digests.json: first beside the old
    one, then alone once the rename is done, so that a crash at any moment leaves a file that verifies."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        if digest:
            new = sha256(tmp)
            recorded = _read_digests(path.parent) or {}
            _write_digests(path.parent, recorded | {path.name: [*recorded.get(path.name, []), new]})
        os.replace(tmp, path)
        if digest:
            _write_digests(path.parent, (_read_digests(path.parent) or {}) | {path.name: [new]})
    finally:
        tmp.unlink(missing_ok=True)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def record_digests(folder: Path, names: Sequence[str]) -> None:
    """Record the SHA-256 of the named files of ``folder`` (a folder being written, before anyone reads it)."""
    folder = Path(folder)
    _write_digests(folder, (_read_digests(folder) or {}) | {name: [sha256(folder / name)] for name in names})


def verify_digests(folder: Path, names: Sequence[str]) -> None:
    """Raise ChangedFileError naming the first of the named files of ``folder`` that no longer has the SHA-256
    recorded when it was written; warn about those with none recorded (written by an older bert4rec). A missing
    file is left to its reader to report."""
    folder = Path(folder)
    recorded = _read_digests(folder) or {}
    unrecorded = [name for name in names if name not in recorded and (folder / name).exists()]
    if unrecorded:
        warnings.warn(f"{folder}: no SHA-256 recorded for {', '.join(unrecorded)} (written by an older bert4rec), "
                      f"so a change to {'it' if len(unrecorded) == 1 else 'them'} cannot be detected", UserWarning,
                      stacklevel=2)
    for name in names:
        if name in recorded and (folder / name).exists() and sha256(folder / name) not in recorded[name]:
            raise ChangedFileError(f"{folder / name}: contents changed since bert4rec wrote it (its SHA-256 is not "
                                   f"the one in {DIGESTS_FILE}); restore the file or write it again")


def _read_digests(folder: Path) -> dict[str, list[str]] | None:
    """``{file name: accepted SHA-256s}``, or None when the folder has no digests.json."""
    path = Path(folder) / DIGESTS_FILE
    if not path.exists():
        return None
    body = read_versioned(path, "digests", DIGESTS_VERSION, "missing")
    files = body.get("sha256")
    if not isinstance(files, dict) or not all(isinstance(v, list) for v in files.values()):
        raise Bert4RecError(f"{path}: malformed digests")
    return files


def recorded_digest(folder: Path, name: str) -> str | None:
    """The SHA-256 digests.json records for ``name`` (the newest, while a write is under way), or None."""
    try:
        accepted = (_read_digests(folder) or {}).get(name) or []
    except Bert4RecError:
        return None
    return accepted[-1] if accepted else None


def _write_digests(folder: Path, files: dict[str, list[str]]) -> None:
    document = versioned("digests", DIGESTS_VERSION, {"sha256": dict(sorted(files.items()))})
    atomic_write_text(Path(folder) / DIGESTS_FILE, json.dumps(document, indent=2))


def atomic_write_text(path: Path, text: str, digest: bool = False) -> None:
    atomic_write(path, lambda p: p.write_text(text), digest)


def write_dir_atomically(out: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_dir)``, then move the finished folder to ``out``, replacing an old one only at the end."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the finished folder should look like any other
    try:
        write(tmp)
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def versioned(kind: str, version: int, body: dict) -> dict:
    """A JSON document that names what it is: ``{"format": "bert4rec-KIND", "version": N, ...body}``."""
    return {"format": f"bert4rec-{kind}", "version": version, **body}


def read_versioned(path: Path, kind: str, version: int, missing: str, error: type[Bert4RecError] = Bert4RecError,
                   data: dict | None = None) -> dict:
    """The body of a document written by ``versioned`` (read from ``path`` unless ``data`` is given); every
    problem is an ``error`` whose one-line message names the file: ``missing`` says what an absent file means."""
    if data is None:
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise error(f"{path}: {missing}") from None
        except (OSError, ValueError) as exc:
            raise error(f"{path}: unreadable ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != f"bert4rec-{kind}":
        raise error(f"{path}: not a bert4rec {kind} file")
    if data.get("version") != version:
        raise error(f"{path}: written by an incompatible bert4rec ({kind} format version {data.get('version')}, "
                    f"this version reads {version})")
    return {k: v for k, v in data.items() if k not in ("format", "version")}
