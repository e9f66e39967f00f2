from __future__ import annotations

from dataclasses import fields

import pytest

from bert4rec.errors import Bert4RecError
from bert4rec.model.config import Bert4RecConfig
from bert4rec.training.config import TrainConfig
from bert4rec.training.recipe import Recipe, load_recipe, recipe_names


def test_the_packaged_recipes_load_and_build():
    assert {"paper", "ml-1m-best", "small"} <= set(recipe_names())
    for name in recipe_names():
        recipe = load_recipe(name)
        assert recipe.description
        model, training = recipe.build(num_items=100)
        assert model.num_items == 100 and isinstance(training, TrainConfig)


def test_ml_1m_best_is_the_headline_runs_settings():
    model, training = load_recipe("ml-1m-best").build(num_items=3416)
    assert (model.rating_aware, model.time_aware, model.hidden_size, model.max_len) == (True, True, 64, 200)
    assert (training.batch_size, training.epochs, training.max_minutes, training.valid_every) == (8, 225, 90, 15)
    assert training.patience is None and training.exclude_seen and training.shift_windows
    assert training.ema_decay is None  # the default horizon


def test_paper_recipe_reads_movie_ids_only_with_the_plain_loss():
    model, training = load_recipe("paper").build(num_items=3416)
    assert not model.rating_aware and not model.time_aware
    assert (training.batch_size, training.exclude_seen, training.ema_decay, training.shift_windows) == (128, False,
                                                                                                     0.0, False)


def test_a_recipe_sets_only_what_it_names_and_overrides_win():
    recipe = Recipe("mine", model={"hidden_size": 32}, training={"batch_size": 4, "epochs": 3})
    model, training = recipe.build(10, {"num_layers": 3}, {"epochs": 7})
    assert (model.hidden_size, model.intermediate_size, model.num_layers) == (32, 128, 3)
    assert (training.batch_size, training.epochs) == (4, 7)
    defaults = TrainConfig()
    untouched = [f.name for f in fields(TrainConfig) if f.name not in ("batch_size", "epochs")]
    assert all(getattr(training, name) == getattr(defaults, name) for name in untouched)
    assert recipe.provenance({"num_layers": 3}, {"epochs": 7}) == {"name": "mine", "version": 1,
                                                                    "overrides": {"num_layers": 3, "epochs": 7}}


def test_defaults_have_one_home():
    """Building with no recipe settings gives exactly the dataclasses' defaults."""
    model, training = Recipe("defaults").build(50)
    assert model == Bert4RecConfig(num_items=50) and training == TrainConfig()


def test_a_recipe_file_of_your_own(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('format = "bert4rec-recipe"\nversion = 1\ndescription = "x"\n[training]\nbatch_size = 4\n')
    assert load_recipe(str(path)).build(10)[1].batch_size == 4


@pytest.mark.parametrize(("text", "message"), [
    ('format = "bert4rec-recipe"\nversion = 1\n[training]\nbatch = 4\n', "has no setting 'batch'"),
    ('format = "bert4rec-recipe"\nversion = 1\n[optimizer]\nlr = 1\n', "unknown section 'optimizer'"),
    ('format = "bert4rec-recipe"\nversion = 9\n', "incompatible"),
    ('version = 1\n', "not a bert4rec recipe"),
    ('format = "bert4rec-recipe"\nversion = 1\n[training]\nbatch_size = "big"\n', "invalid setting"),
    ('format = [', "not valid TOML"),
])
def test_bad_recipes_get_one_line_errors(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(Bert4RecError, match=message) as caught:
        load_recipe(str(path)).build(10)
    assert "\n" not in str(caught.value)


def test_unknown_recipe_names_the_known_ones():
    with pytest.raises(Bert4RecError, match=r"unknown recipe 'fast'.*ml-1m-best"):
        load_recipe("fast")
