"""The command line end to end, on real files and a tiny model trained by the CLI itself."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import TINY_TRAIN_ARGS, shared
from typer.testing import CliRunner

from bert4rec.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def assert_clean_error(result, fragment: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert lines[-1].startswith("error:"), result.output
    assert fragment in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", ["download", "prepare", "train", "evaluate", "recommend", "quickstart"])
def test_every_command_has_help(command):
    result = run(command, "--help")
    assert result.exit_code == 0
    assert "Usage" in result.output and len(result.output) > 300


def test_prepare_writes_dataset_and_summary(tmp_path):
    out = tmp_path / "prepared"
    result = run("prepare", "--data", shared("ml-latest-small"), "--out", out, "--json")
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)
    assert (stats["num_users"], stats["num_items"], stats["num_interactions"]) == (610, 3650, 90_274)
    assert sorted(p.name for p in out.iterdir()) == ["digests.json", "interactions.parquet", "movies.parquet",
                                                     "stats.json", "vocab.json"]


def test_prepare_custom_columns(tmp_path):
    pd.DataFrame({"u": [1, 1, 1, 2, 2, 2], "m": [5, 6, 7, 5, 6, 7], "t": range(6)}).to_csv(tmp_path / "log.csv",
                                                                                      index=False)
    result = run("prepare", "--data", tmp_path / "log.csv", "--out", tmp_path / "p", "--user-col", "u",
                 "--item-col", "m", "--time-col", "t", "--rating-col", "", "--min-user", "1", "--min-item", "1")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "p" / "stats.json").read_text())["num_interactions"] == 6


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("userId,movieId,rating,timestamp\n1,abc,4,5\n", "'abc' is not a number"),
        ("", "file is empty"),
        ("userId,movieId,rating,timestamp\n1,2,4,5\n", "no interactions left after filtering"),
        ("user,movie\n1,2\n", "missing column 'userId'"),
    ],
)
def test_prepare_rejects_bad_input_and_writes_nothing(tmp_path, content, fragment):
    (tmp_path / "ratings.csv").write_text(content)
    out = tmp_path / "out"
    assert_clean_error(run("prepare", "--data", tmp_path / "ratings.csv", "--out", out), fragment)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ratings.csv"]


def test_prepare_unknown_release_and_missing_file(tmp_path):
    assert_clean_error(run("prepare", "--data", "ml-99z", "--out", tmp_path / "o"), "not a MovieLens release")
    assert_clean_error(run("prepare", "--data", "ml-1m", "--out", tmp_path / "o"), "BERT4REC_DATA_HOME")


def test_train_refuses_to_clobber(tiny_model_dir):
    assert_clean_error(run("train", "--data", shared("ml-latest-small"), "--out", tiny_model_dir),
                       "--resume")


def test_train_from_prepared_folder_and_resume(tmp_path):
    prepared = tmp_path / "prepared"
    result = run("prepare", "--data", shared("ml-latest-small"), "--out", prepared, "--sample-users", "0.2")
    assert result.exit_code == 0, result.output
    out = tmp_path / "model"
    result = run("train", "--data", prepared, "--out", out, *TINY_TRAIN_ARGS, "--exclude-seen", "--ema-decay", "0.9",
                 "--shift-windows", "--average-last", "2")
    assert result.exit_code == 0, result.output
    assert "best validation NDCG@10" in result.output
    assert "average of epochs 1, 2" in result.output  # checkpoint averaging, kept or not
    history = (out / "history.jsonl").read_text().splitlines()
    assert len(history) == 2
    assert "valid_raw_NDCG@10" in json.loads(history[0])  # the moving average is validated beside the raw weights
    settings = json.loads((out / "train_config.json").read_text())
    assert (settings["exclude_seen"], settings["ema_decay"], settings["shift_windows"]) == (True, 0.9, True)
    assert json.loads((out / "config.json").read_text())["rating_aware"] is True  # the default
    result = run("train", "--out", out, "--resume", "--quiet")  # finished: resuming changes nothing
    assert result.exit_code == 0, result.output
    assert (out / "history.jsonl").read_text().splitlines() == history


def test_a_final_fit_is_kept_whole_and_never_validated(tmp_path):
    prepared = tmp_path / "prepared"
    result = run("prepare", "--data", shared("ml-latest-small"), "--out", prepared, "--sample-users", "0.1")
    assert result.exit_code == 0, result.output
    out = tmp_path / "final"
    result = run("train", "--data", prepared, "--out", out, *TINY_TRAIN_ARGS, "--holdout", "test")
    assert result.exit_code == 0, result.output
    assert "last epoch (holdout test: no validation)" in result.output and "best validation" not in result.output
    assert json.loads((out / "train_config.json").read_text())["holdout"] == "test"
    assert_clean_error(run("evaluate", out, "--split", "valid"), "trained on the valid targets")
    result = run("evaluate", out, "--split", "test", "--json", "--no-sampled")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "metrics.json").read_text())["test"]["model"]["users"] > 0
    assert_clean_error(run("train", "--data", prepared, "--out", tmp_path / "x", "--holdout", "all"), "holdout")


def test_evaluate_writes_metrics(tiny_model_dir):
    result = run("evaluate", tiny_model_dir, "--split", "valid", "--json")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output[result.output.index("{"):])
    stored = json.loads((tiny_model_dir / "metrics.json").read_text())
    assert stored["valid"] == printed
    assert {"full", "sampled_100", "users"} <= set(printed["model"])
    assert printed["model"]["users"] == 610
    assert printed["most_popular"]["full"]["HR@10"] > 0
    assert_clean_error(run("evaluate", tiny_model_dir, "--split", "train"), "--split")


def test_recommend_for_titles_table_and_json(tiny_model_dir):
    result = run("recommend", tiny_model_dir, "--movies", "Toy Story", "Heat (1995)", "--k", "5")
    assert result.exit_code == 0, result.output
    assert "top 5 after 2 titles" in result.output and "Heat (1995)" in result.output
    result = run("recommend", tiny_model_dir, "--movies", "Toy Story", "Heat (1995)", "--k", "5", "--json")
    data = json.loads(result.output)
    assert len(data["items"]) == 5
    assert {1, 6}.isdisjoint(item["movieId"] for item in data["items"])


def test_recommend_for_user_and_batch(tiny_model_dir, tmp_path):
    result = run("recommend", tiny_model_dir, "--user", "42", "--k", "3", "--json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.output)["items"]) == 3
    out = tmp_path / "recs.parquet"
    result = run("recommend", tiny_model_dir, "--users", "all", "--out", out, "--k", "4")
    assert result.exit_code == 0, result.output
    recs = pd.read_parquet(out)
    assert len(recs) == 610 * 4 and list(recs.columns) == ["userId", "rank", "movieId", "title", "score"]


def test_rating_aware_train_and_liked_recommendations(tiny_aware_dir, tmp_path):
    config = json.loads((tiny_aware_dir / "config.json").read_text())
    assert config["rating_aware"] is True and config["time_aware"] is True
    liked = run("recommend", tiny_aware_dir, "--user", "42", "--k", "5", "--liked", "--json")
    plain = run("recommend", tiny_aware_dir, "--user", "42", "--k", "5", "--json")
    assert liked.exit_code == 0 and plain.exit_code == 0, liked.output + plain.output
    assert json.loads(liked.output)["items"] != json.loads(plain.output)["items"]  # scores at least differ
    out = tmp_path / "liked.csv"
    assert run("recommend", tiny_aware_dir, "--users", "1,2", "--liked", "--out", out).exit_code == 0
    assert len(pd.read_csv(out)) == 20


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--user", "999999"], "unknown user id 999999"),
        (["--movie-ids", "1", "--movie-ids", "123456789"], "unknown movie id"),
        (["--movies", "qwertyuiopasdf"], "no movie matches"),
        (["--movies", "hamlet"], "Hamlet (1996) [id 1411]"),  # ids in brackets survive rich's markup
        (["--user", "1", "--k", "0"], "k must be between"),
        (["--user", "1", "--k", "100000"], "k must be between"),
        (["--user", "1", "--movies", "Heat"], "exactly one of"),
        (["--users", "all"], "--out"),
        (["--users", "1,x", "--out", "r.parquet"], "comma-separated"),
        (["--user", "1", "--liked"], "rating-aware"),
    ],
)
def test_recommend_bad_input(tiny_model_dir, args, fragment):
    assert_clean_error(run("recommend", tiny_model_dir, *args), fragment)


def test_recommend_missing_or_corrupt_model(tmp_path, tiny_model_dir):
    assert_clean_error(run("recommend", tmp_path / "nothing", "--user", "1"), "no such model folder")
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "config.json").write_text("{oops")
    assert_clean_error(run("recommend", tmp_path / "fake", "--user", "1"), "unreadable")


def test_quickstart_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("BERT4REC_DATA_HOME", str(shared("ml-latest-small").parent))
    out = tmp_path / "qs"
    result = run("quickstart", "--out", out, "--epochs", "1", "--device", "cpu")
    assert result.exit_code == 0, result.output
    for text in ("prepared dataset", "training summary", "most popular", "top 10 for user",
                 "top 10 after watching Toy Story, Matrix, Shawshank Redemption"):
        assert text in result.output
    assert json.loads((out / "metrics.json").read_text())["test"]["model"]["users"] == 610


def test_serve_binds_to_loopback_by_default(untrained_model_dir, monkeypatch):
    import gc

    import uvicorn

    bound = []
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, **kw: bound.append((host, port, app.title)))
    monkeypatch.setattr(gc, "freeze", lambda: None)
    assert run("serve", untrained_model_dir).exit_code == 0
    assert run("serve", untrained_model_dir, "--host", "0.0.0.0", "--port", "9000").exit_code == 0
    assert bound == [("127.0.0.1", 8000, "bert4rec"), ("0.0.0.0", 9000, "bert4rec")]
    assert_clean_error(run("serve", "/nonexistent-model", "--port", "0"), "--port")


def test_train_recipe_with_overrides_is_recorded(tmp_path):
    """A recipe's settings train unless an option given on the command line overrides them; train_config.json
    records the recipe and the overrides."""
    prepared = small_prepared(tmp_path)
    out = tmp_path / "model"
    result = run("train", "--data", prepared, "--out", out, "--recipe", "small", "--epochs", "1", "--hidden-size",
                 "16", "--layers", "1", "--max-len", "12", "--quiet")
    assert result.exit_code == 0, result.output
    settings = json.loads((out / "train_config.json").read_text())
    assert settings["recipe"] == {"name": "small", "version": 1,
                                  "overrides": {"epochs": 1, "hidden_size": 16, "num_layers": 1, "max_len": 12}}
    assert settings["epochs"] == 1 and settings["valid_every"] == 5 and settings["patience"] is None  # the recipe's
    assert settings["max_minutes"] == 4  # the recipe's, not overridden
    model = json.loads((out / "config.json").read_text())
    assert (model["hidden_size"], model["num_layers"], model["max_len"], model["rating_aware"]) == (16, 1, 12, True)


def test_train_unknown_recipe_is_a_clean_error(tmp_path):
    assert_clean_error(run("train", "--data", shared("ml-latest-small"), "--out", tmp_path / "m", "--recipe", "fast"),
                       "unknown recipe 'fast'")


def test_train_help_groups_the_options_in_panels():
    result = run("train", "--help")
    for panel in ("Data", "Model", "Training", "Run and output"):
        assert f"─ {panel} ─" in result.output


def test_progress_in_a_log_is_one_plain_line_per_epoch(tmp_path):
    """Not a terminal (CliRunner's output is a buffer): no bar redraws, a line per epoch, and no NDCG@10 shown
    before there is one."""
    prepared = small_prepared(tmp_path)
    result = run("train", "--data", prepared, "--out", tmp_path / "m", "--epochs", "3", "--valid-every", "2",
                 "--hidden-size", "16", "--layers", "1", "--max-len", "12")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert "ndcg" not in lines[0] and "best ndcg10=" in lines[1]
    assert "\r" not in result.output and "\x1b[" not in result.output
    evaluated = run("evaluate", tmp_path / "m", "--split", "valid", "--no-sampled")
    assert evaluated.exit_code == 0, evaluated.output
    assert "NDCG@10" in evaluated.output and "\r" not in evaluated.output and "full ranking:" not in evaluated.output


def small_prepared(tmp_path):
    """A tenth of ml-latest-small's users, prepared."""
    prepared = tmp_path / "prepared"
    result = run("prepare", "--data", shared("ml-latest-small"), "--out", prepared, "--sample-users", "0.1")
    assert result.exit_code == 0, result.output
    return prepared


def test_every_train_option_defaults_to_its_config_field():
    import inspect
    from dataclasses import fields

    from bert4rec.cli.train import MODEL_OPTIONS, TRAINING_OPTIONS, train_command
    from bert4rec.model.config import Bert4RecConfig
    from bert4rec.training.config import TrainConfig

    options = inspect.signature(train_command).parameters
    model = {f.name: f.default for f in fields(Bert4RecConfig)}
    training = {f.name: f.default for f in fields(TrainConfig)}
    for option, field in MODEL_OPTIONS.items():
        assert options[option].default == model[field], option
    for option in TRAINING_OPTIONS:
        assert options[option].default == training[option], option
