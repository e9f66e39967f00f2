"""Import a dataset into the store and export it back: prepare reads the export exactly as it read the original."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import TINY_TRAIN_ARGS, shared
from typer.testing import CliRunner

from bert4rec.cli import app
from bert4rec.data import movielens, preprocess
from bert4rec.errors import StoreError
from bert4rec.store import Event, EventStore, MovieRecord, connect, export_dataset, import_dataset, migrate, transfer

runner = CliRunner()


def new_store(url: str) -> EventStore:
    migrate(connect(url, create=True))
    return EventStore.open(url)


def test_import_then_export_prepares_exactly_like_the_original(store_url, tmp_path):
    store = new_store(store_url)
    raw = movielens.load(shared("ml-100k"))
    done = import_dataset(store, raw, progress=False)
    assert (done.users, done.movies, done.events) == (943, 1682, 100_000)
    assert store.counts() == {"users": 943, "movies": 1682, "events": 100_000}
    exported = export_dataset(store, tmp_path / "export", progress=False)
    assert (exported.users, exported.movies, exported.events) == (943, 1682, 100_000)
    original, again = preprocess.prepare(raw), preprocess.prepare(movielens.load(tmp_path / "export"))
    pd.testing.assert_frame_equal(original.interactions, again.interactions)
    pd.testing.assert_frame_equal(original.movies, again.movies)


def test_unrated_events_and_erased_users_export_as_prepare_expects(store_url, tmp_path):
    store = new_store(store_url)
    store.add_movies([MovieRecord(i, f"M{i}") for i in range(1, 6)])
    store.add_events([Event(1, m, None if m % 2 else 4.0, m) for m in range(1, 6)] + [Event(2, 1, 5.0, 9)])
    store.delete_user(2)
    export_dataset(store, tmp_path / "export", progress=False)
    ratings = pq.read_table(tmp_path / "export" / "ratings.parquet").to_pandas()
    assert ratings["userId"].tolist() == [1] * 5
    assert ratings["rating"].isna().tolist() == [True, False, True, False, True]
    prepared = preprocess.prepare(movielens.load(tmp_path / "export"), preprocess.PrepareParams(None, 1, 1))
    assert prepared.interactions["rating"].isna().sum() == 3


def test_a_second_import_is_refused_unless_appending(store_url, tmp_path):
    store = new_store(store_url)
    raw = movielens.load(shared("ml-latest-small"))
    import_dataset(store, raw, progress=False)
    with pytest.raises(StoreError, match=r"already holds events.*pass --append"):
        import_dataset(store, raw, progress=False)
    done = import_dataset(store, raw, append=True, progress=False)
    assert (done.users, done.movies) == (0, 0) and store.counts()["events"] == 2 * len(raw.ratings)


def test_an_import_that_fails_halfway_leaves_the_store_as_it_was(store_url, monkeypatch):
    store = new_store(store_url)
    calls = []

    def fail_on_second_chunk(chunk, now):
        calls.append(len(chunk))
        if len(calls) == 2:
            raise OSError("disk full")
        return real(chunk, now)

    real = transfer._event_tuples
    monkeypatch.setattr(transfer, "CHUNK_ROWS", 1000)
    monkeypatch.setattr(transfer, "_event_tuples", fail_on_second_chunk)
    with pytest.raises(OSError, match="disk full"):
        import_dataset(store, movielens.load(shared("ml-100k")), progress=False)
    assert calls == [1000, 1000]  # one chunk of events was written before the failure
    assert store.counts() == {"users": 0, "movies": 0, "events": 0}


def test_cli_init_import_stats_export(tmp_path):
    db = tmp_path / "events.db"
    result = runner.invoke(app, ["db", "stats", "--db", str(db)])
    assert result.exit_code == 2 and "no such database" in result.output
    result = runner.invoke(app, ["db", "init", "--db", str(db)])
    assert result.exit_code == 0 and "schema 0001 created" in result.output
    result = runner.invoke(app, ["db", "import", "--db", str(db), "--data", str(shared("ml-100k")), "--quiet"])
    assert result.exit_code == 0 and "100,000 events imported" in result.output, result.output
    result = runner.invoke(app, ["db", "stats"], env={"BERT4REC_DB": f"sqlite:///{db}"})
    assert result.exit_code == 0 and "943 users, 1,682 movies, 100,000 events" in result.output
    result = runner.invoke(app, ["db", "export", "--db", str(db), "--out", str(tmp_path / "out"), "--quiet"])
    assert result.exit_code == 0 and (tmp_path / "out" / "ratings.parquet").is_file()
    result = runner.invoke(app, ["db", "import", "--db", str(db), "--data", str(shared("ml-100k")), "--quiet"])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "--append" in result.output


def test_prepare_and_train_read_a_store_as_its_events_are_now(store_url, tmp_path):
    store = new_store(store_url)
    raw = movielens.load(shared("ml-latest-small"))
    import_dataset(store, raw, progress=False)
    store.delete_user(1)
    result = runner.invoke(app, ["prepare", "--data", store_url, "--out", str(tmp_path / "prepared"), "--quiet"])
    assert result.exit_code == 0, result.output
    from_store = preprocess.load_prepared(tmp_path / "prepared")
    expected = preprocess.prepare(dataclasses.replace(raw, ratings=raw.ratings[raw.ratings["user_id"] != 1]))
    assert len(from_store.interactions) == len(expected.interactions) < len(raw.ratings)
    pd.testing.assert_frame_equal(from_store.interactions, expected.interactions, check_dtype=False)
    result = runner.invoke(app, ["train", "--data", store_url, "--out", str(tmp_path / "model"), *TINY_TRAIN_ARGS])
    assert result.exit_code == 0, result.output
    trained_on = preprocess.load_prepared(tmp_path / "model" / "dataset")
    assert 1 not in trained_on.user_ids and len(trained_on.user_ids) == len(expected.user_ids)


def test_an_empty_or_missing_store_is_a_one_line_error(tmp_path):
    new_store(f"sqlite:///{tmp_path / 'empty.db'}")
    for url in (f"sqlite:///{tmp_path / 'empty.db'}", f"sqlite:///{tmp_path / 'missing.db'}"):
        result = runner.invoke(app, ["prepare", "--data", url, "--out", str(tmp_path / "out"), "--quiet"])
        assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
        assert not (tmp_path / "out").exists()


def test_cli_without_a_database_says_how_to_name_one(monkeypatch):
    monkeypatch.delenv("BERT4REC_DB", raising=False)
    result = runner.invoke(app, ["db", "init"])
    assert result.exit_code == 2 and "pass --db" in result.output and "BERT4REC_DB" in result.output
