"""Shared fixtures. Integration tests read the real MovieLens files in ../shared/data (never copied here)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch
from hypothesis import settings

# Property tests draw the same examples on every run, so a red run reproduces; BERT4REC_HYPOTHESIS=explore draws
# new ones each time (and prints how to replay a failure).
settings.register_profile("derandomized", derandomize=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("BERT4REC_HYPOTHESIS", "derandomized"))

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("BERT4REC_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.fail(f"{path} is missing: integration tests need ../shared/data beside the repository")
    return path


def read_checkpoint(folder: Path) -> dict:
    """A model folder's training checkpoint, its tensors on the CPU wherever they were trained."""
    return torch.load(folder / "checkpoint.pt", map_location="cpu", weights_only=True)


@pytest.fixture
def ml_latest_small() -> Path:
    return shared("ml-latest-small")


@pytest.fixture
def ml_1m() -> Path:
    return shared("ml-1m")


@pytest.fixture
def ml_100k() -> Path:
    return shared("ml-100k")


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch, tmp_path):
    """No test reaches the network or the user's real cache by accident."""
    monkeypatch.delenv("BERT4REC_DATA_HOME", raising=False)
    monkeypatch.setenv("BERT4REC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("BERT4REC_BASE_URL", "http://127.0.0.1:9/unreachable")
    # serve() points the access log at the stderr of the moment, which the test's capture closes afterwards.
    from bert4rec.serving.access import access_log

    monkeypatch.setattr(access_log, "handlers", list(access_log.handlers))


TINY_TRAIN_ARGS = ["--epochs", "2", "--hidden-size", "16", "--layers", "1", "--heads", "2", "--max-len", "20",
                   "--batch-size", "64", "--quiet"]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny plain model (no ratings) trained for two epochs on ml-latest-small through the real CLI (shared,
    read-only)."""
    return _train_tiny(tmp_path_factory, "tiny", "--no-rating-aware")


@pytest.fixture(scope="session")
def tiny_aware_dir(tmp_path_factory) -> Path:
    """As ``tiny_model_dir``, trained with --rating-aware --time-aware."""
    return _train_tiny(tmp_path_factory, "tiny-aware", "--rating-aware", "--time-aware")


@pytest.fixture(scope="session")
def tiny_featured_dir(tmp_path_factory) -> Path:
    """As ``tiny_model_dir``, trained with --genre-aware --year-aware (the catalogue's genres and years read)."""
    return _train_tiny(tmp_path_factory, "tiny-featured", "--no-rating-aware", "--genre-aware", "--year-aware")


@pytest.fixture(scope="session")
def untrained_model_dir(tmp_path_factory) -> Path:
    """A model folder of ml-latest-small and a tiny plain model that was never trained: enough for the tests of
    what surrounds a model (requests, limits, errors, files), built in seconds."""
    return _untrained(tmp_path_factory, "untrained", rating_aware=False, time_aware=False)


@pytest.fixture(scope="session")
def untrained_aware_dir(tmp_path_factory) -> Path:
    """As ``untrained_model_dir``, with a rating- and time-aware model."""
    return _untrained(tmp_path_factory, "untrained-aware", rating_aware=True, time_aware=True)


def _untrained(tmp_path_factory, name: str, **aware: bool) -> Path:
    from bert4rec.data import movielens, preprocess
    from bert4rec.model.config import Bert4RecConfig
    from bert4rec.model.modeling import Bert4Rec

    out = tmp_path_factory.mktemp("models") / name
    dataset = preprocess.prepare(movielens.load(shared("ml-latest-small")))
    preprocess.save_prepared(dataset, out / "dataset")
    torch.manual_seed(0)
    Bert4Rec(Bert4RecConfig(num_items=dataset.vocab.num_items, hidden_size=16, num_layers=1, num_heads=2, max_len=20,
                            **aware)).save(out)
    return out


def _train_tiny(tmp_path_factory, name: str, *extra: str) -> Path:
    from typer.testing import CliRunner

    from bert4rec.cli import app

    out = tmp_path_factory.mktemp("models") / name
    result = CliRunner().invoke(app, ["train", "--data", str(shared("ml-latest-small")), "--out", str(out),
                                      *TINY_TRAIN_ARGS, *extra])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server for this test session (see tests/postgres.py); skipped where none can be started,
    unless BERT4REC_REQUIRE_POSTGRES=1 (CI), where that is a failure."""
    from postgres import REQUIRE_ENV, PostgresServer

    try:
        server = PostgresServer().start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        message = f"no PostgreSQL server: {exc} {detail.decode(errors='replace')[-500:]}"
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(message)
        pytest.skip(message)
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    """An empty database for one test, on each backend: a SQLite file, and a new database on the session's server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'events.db'}"
    return request.getfixturevalue("postgres_server").new_database()
