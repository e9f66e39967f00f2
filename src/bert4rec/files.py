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

A prepared dataset folder holds interactions.parquet, movies.parquet, vocab.json and stats.json.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from bert4rec.errors import Bert4RecError

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
# A prepared dataset folder
INTERACTIONS_FILE = "interactions.parquet"
MOVIES_FILE = "movies.parquet"
VOCAB_FILE = "vocab.json"
STATS_FILE = "stats.json"


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary path beside ``path``, flush it to disk, then rename it over ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda p: p.write_text(text))


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
