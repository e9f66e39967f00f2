"""Warm start: a model for a grown catalogue begins from a trained one, movie by movie."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY_TRAIN_ARGS, shared
from typer.testing import CliRunner

from bert4rec.cli import app
from bert4rec.data import movielens, preprocess
from bert4rec.data.item_features import genre_names
from bert4rec.data.movielens import NO_GENRES, RawDataset
from bert4rec.errors import Bert4RecError
from bert4rec.model.config import Bert4RecConfig
from bert4rec.model.modeling import Bert4Rec
from bert4rec.training.config import WARM_SCHEDULE_SHARE, TrainConfig
from bert4rec.training.recipe import Recipe
from bert4rec.training.warm_start import BIAS, EMBEDDINGS, set_catalogue_features, short_schedule, warm_start

NEW = {10**6: "Comedy", 10**6 + 1: NO_GENRES}  # movies the old model never saw, and their genres


@pytest.fixture(scope="module")
def grown(tmp_path_factory):
    """ml-latest-small with two new movies, each watched by six users, prepared, and saved."""
    raw = movielens.load(shared("ml-latest-small"))
    extra = pd.DataFrame([(user, movie, np.float32(4.0), 2_000_000_000 + user) for movie in NEW
                          for user in range(1, 7)], columns=raw.ratings.columns)
    movies = pd.concat([raw.movies, pd.DataFrame({"item_id": list(NEW), "title": ["New A (2030)", "New B (2030)"],
                                                  "year": pd.array([2030, 2030], dtype="Int64"),
                                                  "genres": pd.Series(list(NEW.values()), dtype="string")})])
    dataset = preprocess.prepare(RawDataset(pd.concat([raw.ratings, extra]), movies.reset_index(drop=True), "grown"))
    assert set(NEW) <= set(dataset.vocab.item_ids)
    out = tmp_path_factory.mktemp("grown") / "prepared"
    preprocess.save_prepared(dataset, out)
    return dataset, out


def test_known_movies_keep_their_weights_and_new_ones_start_from_their_genre_mates(untrained_model_dir, grown):
    dataset, _ = grown
    old = Bert4Rec.load(untrained_model_dir)
    old_vocab = preprocess.load_prepared(untrained_model_dir / "dataset").vocab
    old_movies = preprocess.load_prepared(untrained_model_dir / "dataset").movies
    torch.manual_seed(5)
    model = Bert4Rec(Bert4RecConfig(**{**old.config.__dict__, "num_items": dataset.vocab.num_items}))
    assert warm_start(model, untrained_model_dir, dataset) == len(NEW)
    before, after = old.state_dict(), model.state_dict()
    new_token = {int(i): t for t, i in enumerate(dataset.vocab.item_ids, start=1)}
    for token, movie in enumerate(old_vocab.item_ids, start=1):
        torch.testing.assert_close(after[EMBEDDINGS][new_token[int(movie)]], before[EMBEDDINGS][token])
        torch.testing.assert_close(after[BIAS][new_token[int(movie)] - 1], before[BIAS][token - 1])
    items = before[EMBEDDINGS][1 : old_vocab.num_items + 1]
    comedies = torch.tensor(old_movies["genres"].str.split("|").apply(lambda g: "Comedy" in g).to_numpy())
    torch.testing.assert_close(after[EMBEDDINGS][new_token[10**6]], items[comedies].mean(0))
    torch.testing.assert_close(after[EMBEDDINGS][new_token[10**6 + 1]], items.mean(0))  # no genre: all movies
    torch.testing.assert_close(after[BIAS][new_token[10**6] - 1], before[BIAS][comedies].mean())
    torch.testing.assert_close(after[EMBEDDINGS][[0, -1]], before[EMBEDDINGS][[0, -1]])  # PAD and MASK
    for name in before:
        if name not in (EMBEDDINGS, BIAS):
            torch.testing.assert_close(after[name], before[name], msg=name)


def test_a_model_of_another_shape_is_refused_naming_what_differs(untrained_model_dir, grown):
    dataset, _ = grown
    config = Bert4RecConfig.load(untrained_model_dir)
    other = Bert4Rec(Bert4RecConfig(**{**config.__dict__, "num_items": dataset.vocab.num_items, "hidden_size": 32}))
    with pytest.raises(Bert4RecError, match="hidden_size 16 there, 32 here"):
        warm_start(other, untrained_model_dir, dataset)


def test_train_init_from_keeps_the_old_models_shape_and_records_where_it_began(untrained_model_dir, grown, tmp_path):
    _, prepared = grown
    out, recipe = tmp_path / "warm", tmp_path / "five.toml"
    recipe.write_text('format = "bert4rec-recipe"\nversion = 1\n[training]\nepochs = 5\n')
    result = CliRunner().invoke(app, ["train", "--data", str(prepared), "--init-from", str(untrained_model_dir),
                                      "--recipe", str(recipe), "--batch-size", "64", "--quiet", "--out", str(out)])
    assert result.exit_code == 0, result.output
    written = json.loads((out / "train_config.json").read_text())
    assert written["init_from"] == str(untrained_model_dir)
    assert written["epochs"] == 1  # no --epochs: the warm start's short schedule, a share of the recipe's five
    assert Bert4RecConfig.load(out).hidden_size == Bert4RecConfig.load(untrained_model_dir).hidden_size == 16
    result = CliRunner().invoke(app, ["train", "--data", str(prepared), "--init-from", str(untrained_model_dir),
                                      *TINY_TRAIN_ARGS, "--hidden-size", "32", "--out", str(tmp_path / "other")])
    assert result.exit_code == 2 and "needs the same model settings" in result.output


def test_a_feature_aware_model_keeps_its_genre_vocabulary_and_takes_the_grown_catalogues_features(grown, tmp_path):
    dataset, _ = grown
    old_data = preprocess.prepare(movielens.load(shared("ml-latest-small")))
    preprocess.save_prepared(old_data, tmp_path / "old" / "dataset")
    config = Bert4RecConfig(num_items=old_data.vocab.num_items, hidden_size=16, num_layers=1, num_heads=2,
                            max_len=20, genre_aware=True, year_aware=True,
                            genres=genre_names(old_data.movies["genres"]))
    old = Bert4Rec(config)
    set_catalogue_features(old, old_data)
    old.save(tmp_path / "old")
    model = Bert4Rec(Bert4RecConfig(**{**config.__dict__, "num_items": dataset.vocab.num_items}))
    set_catalogue_features(model, dataset)
    warm_start(model, tmp_path / "old", dataset)
    token = {int(i): t for t, i in enumerate(dataset.vocab.item_ids, start=1)}[10**6]  # new, a Comedy of 2030
    assert model.item_genres[token].tolist() == [float(g == "Comedy") for g in config.genres]
    assert model.item_years[token] == 1 + (2030 - 1900) // 5
    torch.testing.assert_close(model.genre_embeddings.weight, old.genre_embeddings.weight)
    torch.testing.assert_close(model.year_embeddings.weight, old.year_embeddings.weight)


def test_a_warm_start_trains_for_a_share_of_the_recipes_epochs_unless_told():
    assert short_schedule(Recipe("r", training={"epochs": 30}), {}) == {"epochs": math.ceil(30 * WARM_SCHEDULE_SHARE)}
    assert short_schedule(Recipe("r", training={"epochs": 2}), {"lr": 0.1}) == {"lr": 0.1, "epochs": 1}
    assert short_schedule(Recipe("defaults"), {}) == {"epochs": math.ceil(TrainConfig.epochs * WARM_SCHEDULE_SHARE)}
    assert short_schedule(Recipe("r", training={"epochs": 30}), {"epochs": 7}) == {"epochs": 7}
