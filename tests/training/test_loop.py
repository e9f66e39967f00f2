from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import read_checkpoint
from safetensors.torch import load_file

from bert4rec.data import movielens, preprocess
from bert4rec.data.movielens import RawDataset
from bert4rec.errors import Bert4RecError
from bert4rec.evaluation import metrics
from bert4rec.evaluation import protocols as evaluate
from bert4rec.evaluation.protocols import EvalSet, evaluate_liked, full_ranking_ranks
from bert4rec.files import TRAIN_CONFIG_FILE
from bert4rec.model.config import Bert4RecConfig
from bert4rec.model.device import pick_device
from bert4rec.model.inputs import IGNORE
from bert4rec.model.modeling import Bert4Rec
from bert4rec.model.scoring import model_scorer
from bert4rec.serving.recommender import Filters, Recommender
from bert4rec.training import loop as train

TINY = dict(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_len=16, dropout=0.0,
            attention_dropout=0.0, rating_aware=False)


def pattern_dataset(users: int = 40, items: int = 20, length: int = 14) -> preprocess.PreparedDataset:
    """Every user walks the catalogue in order from a different start: the next item is always current + 1."""
    rows = [(u, (u + k) % items + 1, 4.0, k) for u in range(users) for k in range(length)]
    ratings = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    raw = RawDataset(ratings, movielens.placeholder_movies(ratings["item_id"].to_numpy()), "pattern")
    return preprocess.prepare(raw, preprocess.PrepareParams(min_user_interactions=1, min_item_interactions=1))


def tiny_config(dataset) -> Bert4RecConfig:
    return Bert4RecConfig(num_items=dataset.vocab.num_items, **TINY)


def memorization_dataset(users: int = 40, length: int = 14, items: int = 20) -> preprocess.PreparedDataset:
    """Three fixed item orders shared by all users: a tiny training set a model can learn by heart."""
    rows = [(u, (7 * k + u % 3) % items + 1, 4.0, k) for u in range(users) for k in range(length)]
    ratings = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    raw = RawDataset(ratings, movielens.placeholder_movies(ratings["item_id"].to_numpy()), "memorize")
    return preprocess.prepare(raw, preprocess.PrepareParams(min_user_interactions=1, min_item_interactions=1))


@pytest.mark.parametrize(("loss", "exclude_seen"), [("full", False), ("sampled", False), ("full", True)])
def test_overfits_a_tiny_dataset(tmp_path, loss, exclude_seen):
    dataset = memorization_dataset()
    config = train.TrainConfig(epochs=100, batch_size=8, lr=5e-3, mask_prob=0.3, valid_every=50, patience=None,
                               loss=loss, negatives=5, exclude_seen=exclude_seen)  # 5 negatives among 20 items
    result = train.fit(dataset, tmp_path / "model", tiny_config(dataset), config, progress=False)
    losses = [h["loss"] for h in result["history"]]
    assert losses[-1] < 0.1 * losses[0]
    model = Bert4Rec.load(tmp_path / "model")
    seqs = dataset.sequences()
    users = np.arange(seqs.num_users)
    # training-set recall: hide each user's last training item and ask for it
    last_train = seqs.offsets[users + 1] - 3
    train_set = EvalSet(seqs.tokens, seqs.offsets[users], last_train, seqs.tokens[last_train] - 1)
    ranks = full_ranking_ranks(model_scorer(model), train_set, 16, dataset.vocab.mask)
    assert metrics.hit_rate(ranks, 10) > 0.95
    assert metrics.hit_rate(ranks, 1) > 0.9


def test_outputs_of_a_run(tmp_path):
    dataset = pattern_dataset()
    out = tmp_path / "model"
    result = train.fit(dataset, out, tiny_config(dataset), train.TrainConfig(epochs=2, batch_size=8),
                       progress=False)
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2]
    assert {"loss", "seconds", "valid_NDCG@10", "valid_HR@10"} <= set(history[0])
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert preprocess.load_prepared(out / "dataset").stats["num_users"] == 40
    assert result["best_epoch"] in (1, 2)
    checkpoint = read_checkpoint(out)  # plain tensors and values only
    assert json.loads(checkpoint["history"])[-1]["epoch"] == 2


class Interrupted(Exception):
    pass


@pytest.mark.parametrize(("ema_decay", "shift_windows", "average_last"),
                         [(0.0, False, 0), (0.9, False, 0), (0.0, True, 0), (0.9, False, 3)])
def test_resume_ends_where_an_uninterrupted_run_would(tmp_path, ema_decay, shift_windows, average_last):
    dataset = pattern_dataset(length=40 if shift_windows else 14)  # 38 training items: three windows of 16
    config = train.TrainConfig(epochs=4, batch_size=8, seed=7, patience=None, ema_decay=ema_decay,
                               shift_windows=shift_windows, average_last=average_last)
    model_config = Bert4RecConfig(num_items=dataset.vocab.num_items, **(TINY | {"dropout": 0.2}))
    train.fit(dataset, tmp_path / "straight", model_config, config, progress=False)

    def crash_after_two(epoch):
        if epoch == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        train.fit(dataset, tmp_path / "resumed", model_config, config, progress=False, on_epoch_end=crash_after_two)
    result = train.fit(None, tmp_path / "resumed", resume=True, progress=False)
    assert result["epochs"] == 4
    straight = read_checkpoint(tmp_path / "straight")
    resumed = read_checkpoint(tmp_path / "resumed")
    assert ("averaged" in straight) == (ema_decay > 0)
    for part in ("model", "averaged") if ema_decay else ("model",):
        for name, tensor in straight[part].items():
            assert torch.equal(tensor, resumed[part][name]), (part, name)
    best_a = load_file(tmp_path / "straight" / "model.safetensors")
    best_b = load_file(tmp_path / "resumed" / "model.safetensors")
    assert best_a.keys() == best_b.keys() and all(torch.equal(best_a[k], best_b[k]) for k in best_a)


def test_moving_average_is_validated_and_kept(tmp_path):
    dataset = pattern_dataset()
    out = tmp_path / "m"
    config = train.TrainConfig(epochs=1, batch_size=8, lr=1e-2, ema_decay=0.99)
    train.fit(dataset, out, tiny_config(dataset), config, progress=False)
    record = json.loads((out / "history.jsonl").read_text())
    assert record["valid_NDCG@10"] != record["valid_raw_NDCG@10"]
    kept = load_file(out / "model.safetensors")
    checkpoint = read_checkpoint(out)
    name = "bert.embeddings.word_embeddings.weight"
    assert torch.equal(kept[name], checkpoint["averaged"][f"module.{name}"])  # the average is what is kept
    assert not torch.equal(kept[name], checkpoint["model"][name])
    with pytest.raises(Bert4RecError, match="decay"):
        train.TrainConfig(ema_decay=1.0).validate()


def snapshot_weights(out: Path, epoch: int) -> dict[str, torch.Tensor]:
    return load_file(out / "snapshots" / f"epoch-{epoch:05d}" / "model.safetensors")


@pytest.mark.parametrize(("average_score", "kept"), [(0.9, True), (0.25, False)])
def test_checkpoint_averaging_keeps_the_mean_of_the_last_validations_only_if_it_validates_better(
        tmp_path, monkeypatch, average_score, kept):
    # Validation scores scripted per call: epochs 1-4, then the average. The best single epoch is 3.
    scores = iter([0.1, 0.2, 0.3, 0.15, average_score])
    monkeypatch.setattr(train, "_validation_metrics", lambda *args: {"NDCG@10": next(scores), "HR@10": 0.5})
    dataset = pattern_dataset()
    out = tmp_path / "m"
    config = train.TrainConfig(epochs=4, batch_size=8, lr=1e-2, ema_decay=0.0, patience=None, average_last=3)
    result = train.fit(dataset, out, tiny_config(dataset), config, progress=False)
    assert sorted(p.name for p in (out / "snapshots").iterdir()) == ["epoch-00002", "epoch-00003", "epoch-00004"]
    assert result["averaged"] == {"epochs": [2, 3, 4], "valid": {"NDCG@10": average_score, "HR@10": 0.5},
                                  "kept": kept}
    assert result["best_epoch"] == 3
    weights = load_file(out / "model.safetensors")
    snapshots = [snapshot_weights(out, epoch) for epoch in (2, 3, 4)]
    name = "bert.embeddings.word_embeddings.weight"
    mean = torch.stack([s[name] for s in snapshots]).mean(0)
    assert not torch.allclose(snapshots[0][name], snapshots[2][name])  # the snapshots differ: the mean is news
    if kept:
        assert all(torch.allclose(weights[k], torch.stack([s[k] for s in snapshots]).mean(0)) for k in weights
                   if weights[k].is_floating_point())
    else:
        assert torch.equal(weights[name], snapshots[1][name]) and not torch.allclose(weights[name], mean)


def test_checkpoint_averaging_needs_two_validations_and_validation_itself(tmp_path):
    dataset = pattern_dataset()
    config = train.TrainConfig(epochs=2, batch_size=8, valid_every=5, patience=None, average_last=2)
    assert train.fit(dataset, tmp_path / "m", tiny_config(dataset), config, progress=False)["averaged"] is None
    with pytest.raises(Bert4RecError, match="needs validation"):
        train.TrainConfig(average_last=2, holdout="test").validate()
    with pytest.raises(Bert4RecError, match="validations to average"):
        train.TrainConfig(average_last=-1).validate()


def test_default_average_spans_a_twentieth_of_the_schedule():
    config = train.TrainConfig()
    assert 1 / (1 - train.ema_decay(config, 108_600)) == pytest.approx(5_430)  # ML-1M, batch 16, 200 epochs
    assert train.ema_decay(config, 10) == 0  # too short to average: off
    assert train.ema_decay(train.TrainConfig(ema_decay=0.9), 108_600) == 0.9


def test_runs_set_up_before_the_new_options_resume_without_them(tmp_path):
    path = tmp_path / "train_config.json"
    path.write_text(json.dumps({"epochs": 3, "batch_size": 8}))
    old = train.TrainConfig.load(path)
    assert (old.epochs, old.exclude_seen, old.ema_decay, old.shift_windows) == (3, False, 0.0, False)
    path.write_text(json.dumps(asdict(train.TrainConfig())))
    new = train.TrainConfig.load(path)
    assert (new.exclude_seen, new.ema_decay, new.shift_windows) == (True, None, True)


def test_the_fused_optimizer_takes_the_steps_the_per_tensor_loop_takes():
    models = [Bert4Rec(tiny_config(pattern_dataset())) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    config = train.TrainConfig()
    optimizers = [train.make_optimizer(models[0], config), train.make_optimizer(models[1], config, fused=False)]
    assert optimizers[0].defaults["fused"], "fused by default on CPU"
    inputs, labels = torch.tensor([[1, 2, 21, 4]]), torch.tensor([[IGNORE, IGNORE, 3, IGNORE]])
    for _ in range(3):
        for model, optimizer in zip(models, optimizers, strict=True):
            optimizer.zero_grad()
            model(inputs, labels).backward()
            optimizer.step()
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(a, b)
    assert not torch.equal(models[0].item_bias, torch.zeros_like(models[0].item_bias))


def test_early_stopping_and_budget(tmp_path):
    dataset = pattern_dataset()
    result = train.fit(dataset, tmp_path / "m", tiny_config(dataset),
                       train.TrainConfig(epochs=50, batch_size=8, lr=1e-9, patience=2), progress=False)
    assert result["epochs"] < 50  # a frozen model stops improving at once
    out = tmp_path / "budget"
    result = train.fit(dataset, out, tiny_config(dataset), train.TrainConfig(epochs=10, batch_size=8, valid_every=5,
                       max_minutes=1e-9), progress=False)
    assert result["epochs"] == 1 and result["best_epoch"] == 1  # the epoch that spent the budget was validated
    assert (out / "model.safetensors").is_file()


def test_holdout_decides_which_items_train():
    dataset = pattern_dataset(users=3, length=14)
    seqs = dataset.sequences()
    for holdout, held in (("valid", 2), ("test", 1), ("none", 0)):
        windows, _ = train.TrainingWindows(dataset, 16, holdout=holdout).draw(np.random.default_rng(0))
        ends = seqs.offsets[1:] - held
        assert windows[:, -1].tolist() == seqs.tokens[ends - 1].tolist(), holdout
        assert (windows != 0).sum() == 3 * (14 - held)
        counts = train.TrainingWindows(dataset, 16, holdout=holdout).item_counts(dataset.vocab.num_items)
        trained = np.concatenate([seqs.tokens[o : e] for o, e in zip(seqs.offsets[:-1], ends, strict=True)])
        assert counts.tolist() == np.bincount(trained - 1, minlength=dataset.vocab.num_items).tolist(), holdout
        if holdout == "valid":  # what the sampled softmax draws negatives by: the popularity evaluation counts
            assert counts.tolist() == evaluate.training_popularity(dataset).tolist()
    with pytest.raises(Bert4RecError, match="holdout"):
        train.TrainConfig(holdout="all").validate()


def test_shifted_windows_are_redrawn_each_epoch_but_the_newest_stays():
    dataset = pattern_dataset(users=5, length=40)  # 38 training items a user: windows [22, 38), [6, 22), [0, 6)
    seqs = dataset.sequences()
    newest = [tuple(seqs.tokens[o + 22 : o + 38]) for o in seqs.offsets[:-1]]
    shifted = train.TrainingWindows(dataset, 16, shift=True)
    assert shifted.count == 15  # the unshifted count, which sizes the schedule
    draws = [shifted.draw(np.random.default_rng(epoch))[0] for epoch in range(2)]
    assert not np.array_equal(*draws)
    for windows in draws:
        assert set(newest) <= {tuple(row) for row in windows.tolist()}
    unshifted = train.TrainingWindows(dataset, 16)
    assert np.array_equal(unshifted.draw(np.random.default_rng(0))[0], unshifted.draw(np.random.default_rng(1))[0])


def late_item_dataset(users: int = 40, length: int = 14, items: int = 20) -> preprocess.PreparedDataset:
    """The pattern walk, except that every user's validation item is one movie that comes nowhere else."""
    late = items + 1
    rows = [(u, late if k == length - 2 else (u + k) % items + 1, 4.0, k) for u in range(users) for k in range(length)]
    ratings = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    raw = RawDataset(ratings, movielens.placeholder_movies(ratings["item_id"].to_numpy()), "late")
    return preprocess.prepare(raw, preprocess.PrepareParams(min_user_interactions=1, min_item_interactions=1))


def test_a_final_fit_learns_the_validation_items_and_keeps_its_last_epoch(tmp_path):
    dataset = late_item_dataset()
    seqs = dataset.sequences()
    valid = EvalSet.for_split(seqs, dataset.eval_users(), "valid")
    late = dataset.vocab.encode([21])[0]
    assert set((valid.targets + 1).tolist()) == {late}
    ranks = {}
    for holdout in ("valid", "test"):
        out = tmp_path / holdout
        config = train.TrainConfig(epochs=30, batch_size=8, lr=5e-3, valid_every=10, holdout=holdout, ema_decay=0)
        result = train.fit(dataset, out, tiny_config(dataset), config, progress=False)
        ranks[holdout] = full_ranking_ranks(model_scorer(Bert4Rec.load(out)), valid, 16, dataset.vocab.mask)
        assert result["holdout"] == holdout
    assert metrics.hit_rate(ranks["test"], 1) > 0.9  # trained on the validation items: it has learnt the late movie
    assert metrics.hit_rate(ranks["valid"], 5) < 0.1  # held out, the movie was never a training target
    history = [json.loads(line) for line in (tmp_path / "test" / "history.jsonl").read_text().splitlines()]
    assert len(history) == 30 and not any(k.startswith("valid_") for h in history for k in h)
    kept = load_file(tmp_path / "test" / "model.safetensors")  # the last epoch's weights, nothing chosen
    last = read_checkpoint(tmp_path / "test")["model"]
    assert kept.keys() == last.keys() and all(torch.equal(kept[k], last[k]) for k in kept)


def test_a_run_saves_its_model_once_an_epoch_and_never_leaves_the_folder_without_one(tmp_path, monkeypatch):
    dataset = pattern_dataset(users=8, length=12)
    saved = []
    save = Bert4Rec.save
    monkeypatch.setattr(Bert4Rec, "save", lambda self, folder: saved.append(folder) or save(self, folder))
    config = train.TrainConfig(epochs=3, batch_size=8, holdout="test")
    train.fit(dataset, tmp_path / "fit", tiny_config(dataset), config, progress=False)
    assert saved == [tmp_path / "fit"] * 3  # the latest model each epoch, and no extra copy at the end
    saved.clear()
    spent = replace(config, max_minutes=0)  # out of time before the first epoch
    result = train.fit(dataset, tmp_path / "spent", tiny_config(dataset), spent, progress=False)
    assert result["epochs"] == 0 and saved == [tmp_path / "spent"]
    assert Bert4Rec.load(tmp_path / "spent").config.num_items == dataset.vocab.num_items


@pytest.mark.parametrize(("holdout", "refused"), [("valid", []), ("test", ["valid"]), ("none", ["valid", "test"])])
def test_splits_a_model_trained_on_are_refused(tmp_path, holdout, refused):
    (tmp_path / TRAIN_CONFIG_FILE).write_text(json.dumps(asdict(train.TrainConfig(holdout=holdout))))
    for split in ("valid", "test"):
        if split in refused:
            with pytest.raises(Bert4RecError, match=f"trained on the {split} targets"):
                evaluate.check_evaluable(tmp_path, split)
        else:
            evaluate.check_evaluable(tmp_path, split)


def test_resume_errors(tmp_path):
    with pytest.raises(Bert4RecError, match="nothing to resume"):
        train.fit(None, tmp_path / "nothing", resume=True, progress=False)
    dataset = pattern_dataset()
    out = tmp_path / "m"
    train.fit(dataset, out, tiny_config(dataset), train.TrainConfig(epochs=1, batch_size=8), progress=False)
    (out / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.raises(Bert4RecError, match=r"checkpoint\.pt: contents changed"):
        train.fit(None, out, resume=True, progress=False)
    (out / "digests.json").unlink()  # an older run's folder: the checkpoint's own reader names the problem
    with pytest.raises(Bert4RecError, match="corrupt or incompatible checkpoint"), pytest.warns(UserWarning):
        train.fit(None, out, resume=True, progress=False)


def test_device_selection(monkeypatch):
    assert pick_device("cpu").type == "cpu"
    with pytest.raises(Bert4RecError, match="unknown device 'tpu9'"):
        pick_device("tpu9")
    for cuda, mps, expected in ((True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")):
        monkeypatch.setattr(torch.cuda, "is_available", lambda cuda=cuda: cuda)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda mps=mps: mps)
        assert pick_device("auto").type == expected
    with pytest.raises(Bert4RecError, match="CUDA is not available"):
        pick_device("cuda")


def test_rating_aware_model_learns_what_is_liked(tmp_path):
    """Every user rates all 20 items in random order, items 1-10 always 5 stars and 11-20 always 1: the order
    carries nothing. Asked for a liked movie, a rating-aware model must offer items 1-10; asked for any movie after
    a balanced history, it has no reason to prefer them."""
    rng = np.random.default_rng(0)
    rows = [(u, int(item), 5.0 if item <= 10 else 1.0, k)
            for u in range(60) for k, item in enumerate(rng.permutation(20) + 1)]
    ratings = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    raw = RawDataset(ratings, movielens.placeholder_movies(ratings["item_id"].to_numpy()), "liked")
    dataset = preprocess.prepare(raw, preprocess.PrepareParams(min_user_interactions=1, min_item_interactions=1))
    model_config = Bert4RecConfig(num_items=20, **TINY | {"rating_aware": True})
    config = train.TrainConfig(epochs=60, batch_size=16, lr=5e-3, mask_prob=0.3, valid_every=60, patience=None)
    train.fit(dataset, tmp_path / "model", model_config, config, progress=False)
    recommender = Recommender.load(tmp_path / "model")
    liked = any_ = 0
    for history in ([11, 1, 12, 2], [13, 3], [4, 14, 5, 15, 16, 6]):
        liked += sum(m["movieId"] <= 10 for m in recommender.recommend_history(
            history, 5, Filters(liked=True), ratings=[None] * len(history)).items)
        any_ += sum(m["movieId"] <= 10 for m in recommender.recommend_history(history, 5).items)
    assert liked >= 14  # of 15
    assert liked - any_ >= 5
    # New users who watched half the catalogue: the test target competes with ~10 unseen movies, half of them liked.
    rows = [(u, int(item), 5.0 if item <= 10 else 1.0, k)
            for u in range(80) for k, item in enumerate(rng.permutation(20)[:10] + 1)]
    fresh = preprocess.prepare(RawDataset(pd.DataFrame(rows, columns=ratings.columns), raw.movies, "fresh"),
                               preprocess.PrepareParams(min_user_interactions=1, min_item_interactions=1))
    assert fresh.vocab.num_items == 20
    result = evaluate_liked(recommender.model, fresh, "test")
    assert result["users"] == sum(fresh.sequences().user(u)[-1] <= 10 for u in range(80)) > 20
    assert result["ask_liked"]["NDCG@10"] > result["ask_any"]["NDCG@10"] + 0.05


def sittings_dataset(users: int = 80, seed: int = 0) -> preprocess.PreparedDataset:
    """Users rate in sittings 3 days apart, all of a sitting in the same second. A sitting's second movie is one
    of 11-20, every other movie one of 1-10. Sitting sizes are geometric (memoryless), so the movies alone cannot
    tell whether the last one opened a sitting; the gaps can. Every history ends on a sitting's first movie."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(users):
        sitting, length, size = 0, 0, 2
        while size > 1:
            sitting += 1
            size = 1 if length >= 30 else 1 + int(rng.geometric(0.35))
            for k in range(size):
                rows.append((u, int(rng.integers(10)) + (11 if k == 1 else 1), 4.0, sitting * 3 * 86400))
            length += size
    ratings = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    raw = RawDataset(ratings, movielens.placeholder_movies(ratings["item_id"].to_numpy()), "sittings")
    return preprocess.prepare(raw, preprocess.PrepareParams(min_user_interactions=1, min_item_interactions=1))


def test_time_aware_model_uses_the_gaps(tmp_path):
    """After a history that ends on a sitting's first movie, only a time-aware model knows to offer 11-20."""
    dataset = sittings_dataset()
    share = {}
    for time_aware in (False, True):
        model_config = Bert4RecConfig(num_items=20, **TINY | {"time_aware": time_aware})
        config = train.TrainConfig(epochs=60, batch_size=16, lr=5e-3, mask_prob=0.3, last_item_fraction=0.5,
                                   valid_every=60, patience=None)
        train.fit(dataset, tmp_path / str(time_aware), model_config, config, progress=False)
        recommender = Recommender.load(tmp_path / str(time_aware))
        top = [m["movieId"] for u in dataset.user_ids
               for m in recommender.recommend_user(u, 5, Filters(exclude_seen=False)).items]
        share[time_aware] = np.mean(np.array(top) > 10)
        batch = recommender.recommend_users(list(dataset.user_ids), 5, Filters(exclude_seen=False))
        assert batch["movieId"].tolist() == top  # the batch path reads the same ratings and times
    assert share[True] >= 0.8, share
    assert share[False] <= 0.3, share


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_freed_memory_goes_back_to_the_os():
    def rss_mb() -> float:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    blocks = [bytearray(64 << 10) for _ in range(4000)]  # 250 MB in heap-sized blocks (below the mmap threshold)
    kept = blocks[::8]  # every eighth stays alive, so the heap cannot simply shrink from its top
    del blocks
    before = rss_mb()
    assert train.release_freed_memory()
    assert rss_mb() < before - 100
    assert len(kept) == 500
