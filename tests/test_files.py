"""Atomic writes and the SHA-256 digests that catch a file changed after bert4rec wrote it."""

from __future__ import annotations

import json
import shutil
import struct

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from bert4rec import files
from bert4rec.cli import app
from bert4rec.data import movielens, preprocess
from bert4rec.errors import ChangedFileError
from bert4rec.model.config import Bert4RecConfig
from bert4rec.model.modeling import Bert4Rec
from bert4rec.serving.recommender import Recommender
from bert4rec.training import loop as train
from bert4rec.training.config import TrainConfig


def flip_middle(path, count: int = 100, start: int = 0) -> None:
    """Invert ``count`` bytes in the middle of ``path`` after its first ``start`` bytes."""
    data = bytearray(path.read_bytes())
    middle = start + (len(data) - start) // 2
    data[middle:middle + count] = bytes(b ^ 0xFF for b in data[middle:middle + count])
    path.write_bytes(bytes(data))


def tensor_data_start(path) -> int:
    """Where a safetensors file's tensor bytes begin: after the 8-byte header length and the JSON header."""
    return 8 + struct.unpack("<Q", path.read_bytes()[:8])[0]


@pytest.fixture(scope="module")
def trained_folder(tmp_path_factory):
    """A training run's folder (model, dataset, checkpoint) on a small synthetic dataset, in seconds."""
    rows = [(user, (user + k) % 25 + 1, 4.0, k) for user in range(30) for k in range(10)]
    ratings = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    raw = movielens.RawDataset(ratings, movielens.placeholder_movies(ratings["item_id"].to_numpy()), "pattern")
    dataset = preprocess.prepare(raw, preprocess.PrepareParams(min_user_interactions=1, min_item_interactions=1))
    out = tmp_path_factory.mktemp("trained") / "model"
    config = Bert4RecConfig(num_items=dataset.vocab.num_items, max_len=8, hidden_size=16, num_heads=2, num_layers=1)
    train.fit(dataset, out, config, TrainConfig(epochs=1, batch_size=16), progress=False)
    return out


@pytest.fixture
def model_folder(tmp_path):
    torch.manual_seed(0)
    Bert4Rec(Bert4RecConfig(num_items=200, max_len=8, hidden_size=32, num_heads=2, num_layers=1)).save(tmp_path)
    return tmp_path


def test_altered_tensor_data_is_named_and_would_otherwise_load_silently(model_folder):
    inputs = torch.tensor([[1, 2, 3, 201]])
    before = Bert4Rec.load(model_folder).eval().score_last(inputs)
    weights = model_folder / files.WEIGHTS_FILE
    flip_middle(weights, 100, tensor_data_start(weights))
    with pytest.raises(ChangedFileError, match=r"model\.safetensors: contents changed"):
        Bert4Rec.load(model_folder)
    (model_folder / files.DIGESTS_FILE).unlink()  # what the check guards against: safetensors itself accepts it
    with pytest.warns(UserWarning, match="no SHA-256 recorded for config.json, model.safetensors"):
        changed = Bert4Rec.load(model_folder).eval().score_last(inputs)
    assert not torch.equal(before, changed)


@pytest.mark.parametrize("name", ["config.json", "model.safetensors", "checkpoint.pt", "dataset/interactions.parquet",
                                  "dataset/movies.parquet", "dataset/vocab.json", "dataset/stats.json"])
def test_every_artifact_of_a_trained_folder_is_checked(tmp_path, trained_folder, name):
    folder = tmp_path / "model"
    shutil.copytree(trained_folder, folder)
    assert set(json.loads((folder / "digests.json").read_text())["sha256"]) == {
        "config.json", "model.safetensors", "checkpoint.pt"}
    flip_middle(folder / name, 1)
    load = (lambda: train.fit(None, folder, resume=True, progress=False)) if name == "checkpoint.pt" else (
        lambda: Recommender.load(folder))
    with pytest.raises(ChangedFileError, match=f"{name}: contents changed"):
        load()


def test_a_folder_without_digests_loads_with_a_warning(tmp_path, trained_folder):
    folder = tmp_path / "model"
    shutil.copytree(trained_folder, folder)
    for manifest in (folder / "digests.json", folder / "dataset" / "digests.json"):
        manifest.unlink()
    with pytest.warns(UserWarning) as caught:
        Recommender.load(folder)
    notes = " ".join(str(w.message) for w in caught)
    for name in ("model.safetensors", "config.json", "interactions.parquet", "vocab.json"):
        assert name in notes
    result = CliRunner().invoke(app, ["recommend", str(folder), "--user", "1", "--k", "3"])
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and "Traceback" not in result.output


def test_the_cli_names_a_changed_file_in_one_line(tmp_path, trained_folder):
    folder = tmp_path / "model"
    shutil.copytree(trained_folder, folder)
    flip_middle(folder / "model.safetensors", 100, tensor_data_start(folder / "model.safetensors"))
    result = CliRunner().invoke(app, ["recommend", str(folder), "--user", "1"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "model.safetensors: contents changed" in lines[0]


@pytest.mark.parametrize("crash_at", ["before the rename", "after the rename"])
def test_a_crash_during_a_write_leaves_a_file_that_verifies(tmp_path, monkeypatch, crash_at):
    path = tmp_path / "weights.bin"
    files.atomic_write(path, lambda p: p.write_bytes(b"old"), digest=True)
    real_replace = files.os.replace

    def crash(src, dst):
        if str(dst) == str(path):  # the artifact's rename, not the digests file's
            if crash_at == "after the rename":
                real_replace(src, dst)
            raise KeyboardInterrupt  # stands in for the process dying here
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        files.atomic_write(path, lambda p: p.write_bytes(b"new"), digest=True)
    monkeypatch.setattr(files.os, "replace", real_replace)
    assert path.read_bytes() == (b"old" if crash_at == "before the rename" else b"new")
    files.verify_digests(tmp_path, ["weights.bin"])  # either content is accepted until the next write ends
    files.atomic_write(path, lambda p: p.write_bytes(b"newer"), digest=True)
    path.write_bytes(b"new")  # an earlier content is no longer accepted once a write has finished
    with pytest.raises(ChangedFileError, match=r"weights\.bin"):
        files.verify_digests(tmp_path, ["weights.bin"])


def test_a_malformed_digests_file_is_a_clear_error(model_folder):
    (model_folder / files.DIGESTS_FILE).write_text(json.dumps({"format": "bert4rec-digests", "version": 1,
                                                               "sha256": ["not", "a", "mapping"]}))
    with pytest.raises(files.Bert4RecError, match=r"digests\.json: malformed"):
        Bert4Rec.load(model_folder)
