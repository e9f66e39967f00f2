"""Crashes, corrupt files and hostile input: nothing is lost and every failure is a clear one-line error."""

from __future__ import annotations

import io
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REPO, read_checkpoint, shared
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from bert4rec.data import movielens, preprocess
from bert4rec.errors import Bert4RecError, DataError

# --------------------------------------------------------------------------------------------- crash safety

# The child trains through the real CLI. Each atomic write announces itself and lingers a moment between writing
# the temporary file and renaming it, so that kills land inside checkpoint writes too.
CHILD = """
import sys, time
import bert4rec.files as fsutil
original = fsutil.atomic_write
def slow_atomic_write(path, write):
    def write_then_linger(tmp):
        write(tmp)
        print("WRITING", path.name, flush=True)
        time.sleep(0.05)
    original(path, write_then_linger)
fsutil.atomic_write = slow_atomic_write
import bert4rec.model.modeling, bert4rec.training.checkpoints
bert4rec.model.modeling.atomic_write = slow_atomic_write
bert4rec.training.checkpoints.atomic_write = slow_atomic_write
from bert4rec.cli import app
sys.exit(app(sys.argv[1:], standalone_mode=True))
"""
TRAIN_ARGS = ["--epochs", "6", "--batch-size", "16", "--hidden-size", "16", "--layers", "1", "--heads", "2",
              "--max-len", "16", "--patience", "0", "--precision", "fp32", "--quiet"]


def pattern_prepared(folder: Path) -> Path:
    rows = [(u, (u + k) % 25 + 1, 4.0, k) for u in range(60) for k in range(15)]
    ratings = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    raw = movielens.RawDataset(ratings, movielens.placeholder_movies(ratings["item_id"].to_numpy()), "pattern")
    dataset = preprocess.prepare(raw, preprocess.PrepareParams(min_user_interactions=1, min_item_interactions=1))
    preprocess.save_prepared(dataset, folder)
    return folder


def train_child(*args: str) -> subprocess.Popen:
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-c", CHILD, "train", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)


def final_weights(folder: Path) -> dict:
    return read_checkpoint(folder)["model"]


def assert_consistent(folder: Path) -> None:
    """Whatever a kill left: every file that a later run reads is complete."""
    if (folder / "checkpoint.pt").exists():
        read_checkpoint(folder)
    if (folder / "model.safetensors").exists():
        load_file(folder / "model.safetensors")
    if (folder / "dataset").exists():
        preprocess.load_prepared(folder / "dataset")


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_matches_uninterrupted(tmp_path):
    prepared = pattern_prepared(tmp_path / "prepared")
    reference = tmp_path / "reference"
    child = train_child("--data", str(prepared), "--out", str(reference), *TRAIN_ARGS)
    output, _ = child.communicate(timeout=300)
    assert child.returncode == 0, output
    expected = final_weights(reference)

    rng = random.Random(1234)
    kills_during_writes = 0
    for run in range(6):
        out = tmp_path / f"run{run}"
        child = train_child("--data", str(prepared), "--out", str(out), *TRAIN_ARGS)
        during_write = run % 2 == 0  # half the kills land while a checkpoint file is being written
        target_writes = rng.randint(1, 12)
        writes = 0
        for line in child.stdout:
            if line.startswith("WRITING"):
                writes += 1
                if during_write and writes == target_writes:
                    break
            if not during_write and writes >= target_writes:
                time.sleep(rng.random() * 0.2)
                break
        child.send_signal(signal.SIGKILL)
        child.wait()
        kills_during_writes += during_write
        assert_consistent(out)
        # the same command with --resume: continues the run, or starts it if the kill came before it was set up
        resumed = train_child("--data", str(prepared), "--out", str(out), *TRAIN_ARGS, "--resume")
        output, _ = resumed.communicate(timeout=300)
        assert resumed.returncode == 0, output
        assert not list(out.glob(".*.tmp"))
        got = final_weights(out)
        for name, tensor in expected.items():
            assert torch.equal(tensor, got[name]), f"run {run}: {name} differs from the uninterrupted run"
    assert kills_during_writes >= 3


# --------------------------------------------------------------------------------------------- reader fuzz

CELL = st.one_of(st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
                 st.text(max_size=8), st.none())


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(rows=st.lists(st.tuples(CELL, CELL, CELL, CELL), max_size=30), header=st.booleans())
def test_csv_reader_fuzz_gives_clean_errors_or_valid_tables(tmp_path_factory, rows, header):
    folder = tmp_path_factory.mktemp("fuzz")
    frame = pd.DataFrame(rows, columns=["userId", "movieId", "rating", "timestamp"])
    path = folder / "ratings.csv"
    path.write_text(frame.to_csv(index=False, header=header))
    check_reader(path)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.binary(max_size=400), suffix=st.sampled_from(["csv", "parquet", "zip"]))
def test_arbitrary_bytes_give_clean_errors(tmp_path_factory, data, suffix):
    path = tmp_path_factory.mktemp("bytes") / f"ratings.{suffix}"
    path.write_bytes(data)
    check_reader(path)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(cut=st.floats(0.0, 0.99))
def test_truncated_real_files(tmp_path_factory, cut):
    data = (shared("ml-latest-small") / "ratings.csv").read_bytes()[:200_000]
    path = tmp_path_factory.mktemp("cut") / "ratings.csv"
    path.write_bytes(data[: int(len(data) * cut)])
    check_reader(path)


def check_reader(path: Path) -> None:
    try:
        raw = movielens.load(path)
    except DataError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
        return
    ratings = raw.ratings
    assert list(ratings.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert ratings["user_id"].dtype == np.int64 and ratings["item_id"].dtype == np.int64
    assert np.isfinite(ratings["rating"].to_numpy()).all() or ratings["rating"].isna().all()
    try:
        dataset = preprocess.prepare(raw, preprocess.PrepareParams(min_user_interactions=1,
                                                                   min_item_interactions=1))
    except DataError:
        return
    assert dataset.stats["num_interactions"] == len(ratings)


def test_duplicate_rows_and_latin1_titles(tmp_path):
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4,10\n1,1,4,10\n1,2,3,11\n")
    (tmp_path / "movies.csv").write_bytes("movieId,title,genres\n1,Café (1999),Drama\n2,B (2000),Comedy\n"
                                          .encode("latin-1"))
    raw = movielens.load(tmp_path)
    assert raw.movies["title"].tolist() == ["Café (1999)", "B (2000)"]
    dataset = preprocess.prepare(raw, preprocess.PrepareParams(min_user_interactions=1, min_item_interactions=1))
    assert dataset.interactions["item_id"].tolist() == [1, 1, 2]  # duplicates are kept, in file order


def test_parquet_with_wrong_types(tmp_path):
    frame = pd.DataFrame({"userId": ["a", "b"], "movieId": [1, 2], "rating": [4.0, 5.0], "timestamp": [1, 2]})
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    (tmp_path / "ratings.parquet").write_bytes(buffer.getvalue())
    with pytest.raises(DataError, match="column 'userId', row 1: 'a' is not a number"):
        movielens.load(tmp_path / "ratings.parquet")


def test_no_pickle_anywhere_in_the_package():
    """Weights are safetensors, metadata JSON; the only torch.load reads with weights_only=True."""
    source = REPO / "src" / "bert4rec"
    text = "\n".join(p.read_text() for p in source.rglob("*.py"))
    assert "import pickle" not in text and "pd.read_pickle" not in text
    loads = [line for line in text.splitlines() if "torch.load(" in line]
    assert loads and all("weights_only=True" in line for line in loads)


def test_checkpoint_with_foreign_pickle_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    from bert4rec.training import loop as train

    out = tmp_path / "model"
    out.mkdir()
    (out / "train_config.json").write_text("{}")
    preprocess.save_prepared(preprocess.prepare(movielens.RawDataset(
        pd.DataFrame({"user_id": [1] * 5, "item_id": [1, 2, 3, 4, 5], "rating": [1.0] * 5, "timestamp": range(5)}),
        movielens.placeholder_movies(np.array([1, 2, 3, 4, 5])), "t"),
        preprocess.PrepareParams(min_user_interactions=1, min_item_interactions=1)), out / "dataset")
    from bert4rec.model.config import Bert4RecConfig

    Bert4RecConfig(num_items=5, max_len=4).save(out)
    torch.save({"model": Evil()}, out / "checkpoint.pt")
    with pytest.raises(Bert4RecError, match="corrupt or incompatible checkpoint"):
        train.fit(None, out, resume=True, progress=False)
    assert not (tmp_path / "pwned").exists()
