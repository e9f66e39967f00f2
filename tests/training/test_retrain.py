"""Retraining from the event store: a round trains a new folder and promotes it, unless it does worse on validation
than allowed; a lock keeps two rounds apart; too few events train nothing."""

from __future__ import annotations

import fcntl
import json
import os
import threading

import pytest
from conftest import shared
from typer.testing import CliRunner

from bert4rec.cli import app
from bert4rec.data import movielens
from bert4rec.errors import Bert4RecError
from bert4rec.serving.recommender import Recommender
from bert4rec.store import Event, EventStore, MovieRecord, connect, import_dataset, migrate
from bert4rec.training.retrain import CURRENT, LOCK_FILE, parse_every, point, retrain

TINY_RECIPE = """format = "bert4rec-recipe"
version = 1
[model]
hidden_size = 16
num_layers = 1
num_heads = 2
max_len = 20
[training]
epochs = 1
batch_size = 64
"""


@pytest.fixture(scope="module")
def store_url(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'events.db'}"
    migrate(connect(url, create=True))
    import_dataset(EventStore.open(url), movielens.load(shared("ml-latest-small")), progress=False)
    return url


@pytest.fixture
def recipe(tmp_path) -> str:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_RECIPE)
    return str(path)


def test_a_round_promotes_its_model_and_a_worse_one_is_refused(store_url, recipe, tmp_path):
    models = tmp_path / "models"
    first = retrain(store_url, models, recipe, progress=False, log=lambda _: None)
    assert first.promoted and first.reason is None and first.events > 90_000
    assert os.readlink(models / CURRENT) == first.folder.name  # relative: the folder can move
    assert first.valid_ndcg10 is not None and first.valid_ndcg10 > 0
    Recommender.load(models / CURRENT)  # a complete model folder
    # The live model claims a validation result the next one cannot come near.
    (first.folder / "metrics.json").write_text(json.dumps({"valid": {"full": {"NDCG@10": 0.99}}}))
    second = retrain(store_url, models, recipe, progress=False, log=lambda _: None)
    assert not second.promoted and "below the live model's 0.9900" in second.reason
    assert (models / CURRENT).resolve() == first.folder.resolve() and second.folder.is_dir()
    third = retrain(store_url, models, recipe, max_drop=1.0, warm=True, progress=False, log=lambda _: None)
    assert third.promoted and (models / CURRENT).resolve() == third.folder.resolve()
    began = json.loads((third.folder / "train_config.json").read_text())["init_from"]
    assert began == str(first.folder.resolve())  # a warm start from the live model


def test_a_second_retrain_at_once_is_refused_and_changes_nothing(store_url, recipe, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    with open(models / LOCK_FILE, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(Bert4RecError, match="another retrain is running"):
            retrain(store_url, models, recipe, progress=False, log=lambda _: None)
    assert sorted(p.name for p in models.iterdir()) == [LOCK_FILE]


def test_too_few_events_train_nothing(recipe, tmp_path):
    url = f"sqlite:///{tmp_path / 'small.db'}"
    migrate(connect(url, create=True))
    store = EventStore.open(url)
    store.add_movies(MovieRecord(m, f"Movie {m}") for m in range(1, 20))
    store.add_events([Event(u, m, 4.0, 10 * u + m) for u in range(1, 6) for m in range(1, 11)])
    models = tmp_path / "models"
    with pytest.raises(Bert4RecError, match="50 events after filtering, fewer than the 1,000"):
        retrain(url, models, recipe, progress=False, log=lambda _: None)
    assert not (models / CURRENT).exists() and [p.name for p in models.iterdir()] == [LOCK_FILE]


def test_cli_runs_a_round_and_explains_bad_periods(store_url, recipe, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["retrain", "--db", store_url, "--models", str(tmp_path / "m"), "--recipe", recipe,
                                 "--quiet"])
    assert result.exit_code == 0, result.output
    assert "promoted" in result.output and (tmp_path / "m" / CURRENT).is_symlink()
    result = runner.invoke(app, ["retrain", "--db", store_url, "--models", str(tmp_path / "m"), "--every", "soon"])
    assert result.exit_code == 2 and "give a number and a unit" in result.output
    assert [parse_every(p) for p in ("90s", "30m", "24h", "7d")] == [90, 1800, 86400, 604800]


def test_the_live_link_moves_in_one_step_a_reader_never_finds_it_missing(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    link, missing, done = tmp_path / CURRENT, [], threading.Event()
    point(link, tmp_path / "a")

    def read() -> None:
        while not done.is_set():
            try:
                os.readlink(link)
            except FileNotFoundError:
                missing.append(1)

    reader = threading.Thread(target=read)
    reader.start()
    for flip in range(2000):
        point(link, tmp_path / "ab"[flip % 2])
    done.set()
    reader.join()
    assert not missing
    assert os.readlink(link) == "b"  # relative: the folder can move with its models
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", CURRENT]  # no temporary link left behind
