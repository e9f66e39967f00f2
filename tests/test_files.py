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
from bert4rec.errors import Bert4RecError, ChangedFileError
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


def test_a_folder_written_again_is_replaced_whole_and_nothing_is_left_beside_it(tmp_path):
    out = tmp_path / "deep" / "er" / "out"  # parents are made
    seen = []

    def write(names):
        def into(tmp):
            seen.append(tmp)
            assert tmp.parent == out.parent and tmp.name.startswith(".out.") and tmp.name.endswith(".tmp")
            for name in names:
                (tmp / name).write_text(name)
        return into

    files.write_dir_atomically(out, write(["a", "b"]))
    files.write_dir_atomically(out, write(["c"]))
    assert sorted(p.name for p in out.iterdir()) == ["c"] and (out / "c").read_text() == "c"
    assert [p.name for p in out.parent.iterdir()] == ["out"]  # no temporary or old folder left
    assert out.stat().st_mode & 0o777 == 0o755 and not any(tmp.exists() for tmp in seen)


def test_a_failed_folder_write_keeps_the_old_folder(tmp_path):
    out = tmp_path / "out"
    files.write_dir_atomically(out, lambda tmp: (tmp / "old").write_text("old"))

    def fail(tmp):
        (tmp / "half").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        files.write_dir_atomically(out, fail)
    assert [p.name for p in out.iterdir()] == ["old"] and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_unrecorded_files_are_named_in_one_warning(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).write_text(name)
    with pytest.warns(UserWarning) as one:
        files.verify_digests(tmp_path, ["a"])
    assert str(one[0].message).endswith("no SHA-256 recorded for a (written by an older bert4rec), so a change to it "
                                        "cannot be detected")
    with pytest.warns(UserWarning, match=r"recorded for a, b \(written .*so a change to them cannot be detected$"):
        files.verify_digests(tmp_path, ["a", "b", "missing"])


def test_digests_are_an_indented_versioned_document(tmp_path):
    (tmp_path / "a").write_text("a")
    files.record_digests(tmp_path, ["a"])
    text = (tmp_path / files.DIGESTS_FILE).read_text()
    assert text.startswith('{\n  "format": "bert4rec-digests",\n  "version": 1,\n  "sha256": {\n    "a": [')
    assert json.loads(text)["sha256"] == {"a": [files.sha256(tmp_path / "a")]}


def test_versioned_documents_name_what_is_wrong(tmp_path):
    path = tmp_path / "x.json"
    body = files.read_versioned(path, "thing", 2, "missing", data={"format": "bert4rec-thing", "version": 2, "k": 1})
    assert body == {"k": 1}
    for data in ([1, 2], {"format": "other"}, "text"):
        with pytest.raises(Bert4RecError, match=rf"^{path}: not a bert4rec thing file$"):
            files.read_versioned(path, "thing", 2, "missing", data=data)
    with pytest.raises(Bert4RecError, match=r"incompatible bert4rec \(thing format version 7, this version reads 2\)"):
        files.read_versioned(path, "thing", 2, "missing", data={"format": "bert4rec-thing", "version": 7})


def test_recorded_digest_is_the_files_sha256_or_none(tmp_path):
    files.atomic_write_text(tmp_path / "a.json", "{}", digest=True)
    (tmp_path / "b.json").write_text("{}")
    assert files.recorded_digest(tmp_path, "a.json") == files.sha256(tmp_path / "a.json")
    assert files.recorded_digest(tmp_path, "b.json") is None  # written without one
    assert files.recorded_digest(tmp_path / "elsewhere", "a.json") is None  # no digests.json at all
