"""Crashes, corrupt files and hostile input: nothing is lost and every failure is a clear one-line error."""

from __future__ import annotations

import ast
import io
import json
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
from bert4rec.files import verify_digests
from bert4rec.model.modeling import Bert4Rec

# --------------------------------------------------------------------------------------------- crash safety

# The child trains through the real CLI. Each atomic write announces itself and lingers a moment between writing
# the temporary file and renaming it; with HANG_AT=NAME:N it stops for good at the Nth write of NAME, its temporary
# file complete but not yet renamed, and says where that file is, so that the parent's kill lands there for sure.
CHILD = """
import os, sys, time
import bert4rec.files as files
original = files.atomic_write
hang_name, _, hang_at = os.environ.get("HANG_AT", "").partition(":")
writes = {}
def slow_atomic_write(path, write, *args, **kwargs):
    def write_then_linger(tmp):
        write(tmp)
        writes[path.name] = writes.get(path.name, 0) + 1
        print("WRITING", path.name, flush=True)
        if path.name == hang_name and writes[path.name] == int(hang_at):
            print("HANGING", tmp, flush=True)
            time.sleep(600)
        time.sleep(0.05)
    original(path, write_then_linger, *args, **kwargs)
files.atomic_write = slow_atomic_write
import bert4rec.model.modeling, bert4rec.training.checkpoints
bert4rec.model.modeling.atomic_write = slow_atomic_write
bert4rec.training.checkpoints.atomic_write = slow_atomic_write
from bert4rec.cli import app
sys.exit(app(sys.argv[1:], standalone_mode=True))
"""
EPOCHS = 6
TRAIN_ARGS = ["--epochs", str(EPOCHS), "--batch-size", "16", "--hidden-size", "16", "--layers", "1", "--heads", "2",
              "--max-len", "16", "--patience", "0", "--precision", "fp32", "--quiet"]
TIMINGS = {"seconds", "train_seconds", "seq_per_s"}  # the only history entries that may differ between runs


def pattern_prepared(folder: Path) -> Path:
    rows = [(u, (u + k) % 25 + 1, 4.0, k) for u in range(60) for k in range(15)]
    ratings = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    raw = movielens.RawDataset(ratings, movielens.placeholder_movies(ratings["item_id"].to_numpy()), "pattern")
    dataset = preprocess.prepare(raw, preprocess.PrepareParams(min_user_interactions=1, min_item_interactions=1))
    preprocess.save_prepared(dataset, folder)
    return folder


def train_child(*args: str, hang_at: str = "") -> subprocess.Popen:
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "HANG_AT": hang_at}
    return subprocess.Popen([sys.executable, "-c", CHILD, "train", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)


def run_outputs(folder: Path) -> dict:
    """Everything a finished run leaves that a user reads: the kept model, the checkpoint's weights and their
    moving average, and the history without its timings."""
    checkpoint = read_checkpoint(folder)
    history = [{k: v for k, v in json.loads(line).items() if k not in TIMINGS}
               for line in (folder / "history.jsonl").read_text().splitlines()]
    return {"model.safetensors": load_file(folder / "model.safetensors"), "checkpoint model": checkpoint["model"],
            "checkpoint averaged": checkpoint["averaged"], "history": history}


def assert_same_outputs(got: dict, expected: dict, run: int) -> None:
    assert got["history"] == expected["history"], f"run {run}: history.jsonl differs"
    assert len(expected["history"]) == EPOCHS
    for part in ("model.safetensors", "checkpoint model", "checkpoint averaged"):
        assert got[part].keys() == expected[part].keys(), (run, part)
        for name, tensor in expected[part].items():
            assert torch.equal(tensor, got[part][name]), f"run {run}: {part} {name} differs from the uninterrupted run"


def assert_consistent(folder: Path) -> None:
    """Whatever a kill left: every file that a later run reads is complete and matches its recorded digest."""
    if (folder / "checkpoint.pt").exists():
        verify_digests(folder, ["checkpoint.pt"])
        read_checkpoint(folder)
    if (folder / "model.safetensors").exists():
        Bert4Rec.load(folder)
    if (folder / "dataset").exists():
        preprocess.load_prepared(folder / "dataset")


def kill_inside_a_checkpoint_write(out: Path, prepared: Path, write: int) -> None:
    child = train_child("--data", str(prepared), "--out", str(out), *TRAIN_ARGS, hang_at=f"checkpoint.pt:{write}")
    tmp = next((Path(line.split(maxsplit=1)[1].strip()) for line in child.stdout if line.startswith("HANGING")), None)
    assert tmp is not None and tmp.name.startswith(".checkpoint.pt.") and tmp.exists()
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert tmp.exists()  # killed with checkpoint.pt's temporary file written and not yet renamed


def kill_at_a_random_moment(out: Path, prepared: Path, rng: random.Random) -> None:
    child = train_child("--data", str(prepared), "--out", str(out), *TRAIN_ARGS)
    target_writes, writes = rng.randint(1, 3 * EPOCHS), 0
    for line in child.stdout:
        writes += line.startswith("WRITING")
        if writes >= target_writes:
            time.sleep(rng.random() * 0.2)
            break
    child.send_signal(signal.SIGKILL)
    child.wait()


@pytest.mark.slow
def test_sigkill_inside_checkpoint_writes_and_at_random_moments_then_resume_matches_uninterrupted(tmp_path):
    prepared = pattern_prepared(tmp_path / "prepared")
    reference = tmp_path / "reference"
    child = train_child("--data", str(prepared), "--out", str(reference), *TRAIN_ARGS)
    output, _ = child.communicate(timeout=300)
    assert child.returncode == 0, output
    expected = run_outputs(reference)

    rng = random.Random(1234)
    for run, write in enumerate([1, 3, EPOCHS, None, None, None]):  # three kills inside checkpoint writes
        out = tmp_path / f"run{run}"
        if write is None:
            kill_at_a_random_moment(out, prepared, rng)
        else:
            kill_inside_a_checkpoint_write(out, prepared, write)
        assert_consistent(out)
        # the same command with --resume: continues the run, or starts it if the kill came before it was set up
        resumed = train_child("--data", str(prepared), "--out", str(out), *TRAIN_ARGS, "--resume")
        output, _ = resumed.communicate(timeout=300)
        assert resumed.returncode == 0, output
        assert not list(out.glob(".*.tmp"))
        assert_same_outputs(run_outputs(out), expected, run)


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


UNPICKLING_MODULES = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def unpickling_calls(source: str) -> tuple[list[str], list[str]]:
    """(what in ``source`` can unpickle, the torch.load calls that cannot), from its syntax tree: imports of a
    pickling module, read_pickle, numpy loads with allow_pickle=True, torch.load without weights_only=True."""
    unsafe, safe_torch_loads = [], []

    def keyword(call: ast.Call, name: str):
        return next((k.value.value for k in call.keywords if k.arg == name and isinstance(k.value, ast.Constant)),
                    None)

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            unsafe += [f"import {n}" for n in names if n.split(".")[0] in UNPICKLING_MODULES]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            call, owner = node.func.attr, ast.unparse(node.func.value)
            if call == "read_pickle" or (call in ("load", "loads") and owner in UNPICKLING_MODULES):
                unsafe.append(f"{owner}.{call}")
            elif call == "load" and owner == "torch":
                (safe_torch_loads if keyword(node, "weights_only") is True else unsafe).append(ast.unparse(node))
            elif call in ("load", "loadtxt", "fromfile") and keyword(node, "allow_pickle") is True:
                unsafe.append(ast.unparse(node))
    return unsafe, safe_torch_loads


@pytest.mark.parametrize("snippet", [
    "import pickle", "from joblib import load", "import dill as d", "pd.read_pickle(path)", "pickle.loads(b)",
    "torch.load(path)", "torch.load(path, weights_only=False)", "np.load(path, allow_pickle=True)",
])
def test_the_pickle_scan_catches_each_way_in(snippet):
    assert unpickling_calls(snippet)[0], snippet


def test_no_pickle_anywhere_in_the_package():
    """Weights are safetensors, metadata JSON; the only torch.load reads with weights_only=True."""
    unsafe, safe_torch_loads = [], []
    for path in (REPO / "src" / "bert4rec").rglob("*.py"):
        found, safe = unpickling_calls(path.read_text())
        unsafe += [f"{path.name}: {what}" for what in found]
        safe_torch_loads += safe
    assert unsafe == []
    assert len(safe_torch_loads) == 1  # the checkpoint's reader


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
