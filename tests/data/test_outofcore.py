"""Out-of-core prepare (DuckDB) of partitioned parquet: the same folder, byte for byte in content, as in memory."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from conftest import shared
from typer.testing import CliRunner

from bert4rec.cli import app
from bert4rec.data import movielens, preprocess
from bert4rec.data.leave_one_out import TEST, TRAIN, VALID
from bert4rec.data.outofcore import prepare_partitioned
from bert4rec.data.preprocess import PrepareParams
from bert4rec.errors import DataError

runner = CliRunner()


@pytest.fixture(scope="module")
def partitioned(tmp_path_factory):
    """ml-latest-small as 7 hive-style parquet files, timestamps coarsened so that many interactions tie (the tie
    order is then the file order, which both engines must follow), and the movies file beside them."""
    folder = tmp_path_factory.mktemp("partitioned")
    source = shared("ml-latest-small")
    ratings = pacsv.read_csv(source / "ratings.csv")
    ratings = ratings.set_column(3, "timestamp", pa.array(ratings["timestamp"].to_numpy() // 200_000))
    for i, rows in enumerate(np.array_split(np.arange(ratings.num_rows), 7)):
        part = folder / f"day={i % 3}"
        part.mkdir(exist_ok=True)
        pq.write_table(ratings.take(rows), part / f"part-{i}.parquet")
    pacsv.write_csv(pacsv.read_csv(source / "movies.csv"), folder / "movies.csv")
    return folder


def assert_same_prepared(a, b):
    left, right = pq.read_table(a / "interactions.parquet"), pq.read_table(b / "interactions.parquet")
    assert left.num_rows == right.num_rows > 0
    assert left.equals(right.cast(left.schema)), "interactions differ"
    assert pq.read_table(a / "movies.parquet").equals(pq.read_table(b / "movies.parquet"))
    for name in ("vocab.json", "stats.json"):
        assert json.loads((a / name).read_text()) == json.loads((b / name).read_text()), name


@pytest.mark.parametrize("params", [
    PrepareParams(),
    PrepareParams(min_rating=3.5, min_user_interactions=10, min_item_interactions=3),
    PrepareParams(sample_users=0.3, seed=4),
])
def test_same_result_as_in_memory(tmp_path, partitioned, params):
    memory = preprocess.prepare(movielens.load(partitioned), params)
    preprocess.save_prepared(memory, tmp_path / "memory")
    stats = prepare_partitioned(partitioned, tmp_path / "duckdb", params, progress=False)
    assert_same_prepared(tmp_path / "memory", tmp_path / "duckdb")
    assert stats["num_interactions"] == len(memory.interactions)
    loaded = preprocess.load_prepared(tmp_path / "duckdb")
    assert loaded.movies["title"].iloc[0] == memory.movies["title"].iloc[0] != "item 1"  # the real catalogue


def test_ties_follow_file_order(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    # Every interaction at the same second; files named so that path order differs from creation order.
    for name, items in (("b.parquet", [3, 4]), ("a.parquet", [1, 2]), ("c/0.parquet", [5])):
        (folder / name).parent.mkdir(exist_ok=True)
        pq.write_table(pa.table({"userId": [7] * len(items), "movieId": items, "timestamp": [1] * len(items)}),
                       folder / name)
    prepare_partitioned(folder, tmp_path / "out", PrepareParams(None, 1, 1), progress=False)
    table = pq.read_table(tmp_path / "out" / "interactions.parquet").to_pandas()
    assert table["item_id"].tolist() == [1, 2, 3, 4, 5]
    assert table["split"].tolist() == [0, 0, 0, 1, 2]


def test_a_user_with_three_items_gets_train_valid_test_in_both_engines(tmp_path):
    folder = tmp_path / "data"
    users = [1, 1, 2, 2, 2, 3, 3, 3, 3]  # two, three and four items
    write_one(folder, userId=users, movieId=[1, 2, 1, 2, 3, 1, 2, 3, 4], rating=[4.0] * 9, timestamp=list(range(9)))
    params = PrepareParams(None, 1, 1)
    prepare_partitioned(folder, tmp_path / "duckdb", params, progress=False)
    duckdb = pq.read_table(tmp_path / "duckdb" / "interactions.parquet").to_pandas()
    memory = preprocess.prepare(movielens.load(folder), params).interactions
    expected = [TRAIN, TRAIN, TRAIN, VALID, TEST, TRAIN, TRAIN, VALID, TEST]
    for engine in (duckdb, memory):
        assert engine["user_id"].tolist() == users and engine["split"].tolist() == expected


def test_an_empty_rating_means_not_rated_in_both_engines(tmp_path):
    # What `bert4rec db export` writes for events that came without a rating.
    folder = write_one(tmp_path / "data", userId=[1, 1, 1, 1], movieId=[1, 2, 3, 4],
                       rating=[4.0, None, float("nan"), 2.5], timestamp=[1, 2, 3, 4])
    params = PrepareParams(None, 1, 1)
    prepare_partitioned(folder, tmp_path / "duckdb", params, progress=False)
    preprocess.save_prepared(preprocess.prepare(movielens.load(folder), params), tmp_path / "memory")
    assert_same_prepared(tmp_path / "memory", tmp_path / "duckdb")
    ratings = pq.read_table(tmp_path / "memory" / "interactions.parquet")["rating"].to_numpy()
    np.testing.assert_array_equal(ratings, [4.0, np.nan, np.nan, 2.5])


def write_one(folder, **columns):
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), folder / "part-0.parquet")
    return folder


@pytest.mark.parametrize(("columns", "message"), [
    ({"user": [1, 2], "movieId": [1, 2], "timestamp": [1, 2]}, "missing column 'userId'"),
    ({"userId": ["7", "x"], "movieId": [1, 2], "timestamp": [1, 2]}, "row 2: missing or invalid user_id"),
    ({"userId": [1.0, 1.5], "movieId": [1, 2], "timestamp": [1, 2]}, "row 2: missing or invalid user_id"),
    ({"userId": [1, 2], "movieId": [1, None], "timestamp": [1, 2]}, "row 2: missing or invalid item_id"),
    ({"userId": [1, 2], "movieId": [1, 2], "rating": [4.0, float("inf")], "timestamp": [1, 2]},
     "row 2: missing or invalid rating"),
    ({"userId": [1, 2], "movieId": [1, 2], "rating": ["4", "good"], "timestamp": [1, 2]},
     "row 2: missing or invalid rating"),
])
def test_bad_values_are_named_and_nothing_is_written(tmp_path, columns, message):
    folder = write_one(tmp_path / "data", **columns)
    with pytest.raises(DataError, match=message):
        prepare_partitioned(folder, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_nothing_left_and_no_files(tmp_path):
    folder = write_one(tmp_path / "data", userId=[1, 2], movieId=[1, 2], timestamp=[1, 2])
    with pytest.raises(DataError, match="no interactions left"):
        prepare_partitioned(folder, tmp_path / "out", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no parquet files"):
        prepare_partitioned(tmp_path / "empty", tmp_path / "out", progress=False)


def test_bad_memory_limit_is_a_clear_error(tmp_path):
    folder = write_one(tmp_path / "data", userId=[1, 2], movieId=[1, 2], timestamp=[1, 2])
    with pytest.raises(DataError, match="memory"):
        prepare_partitioned(folder, tmp_path / "out", memory_limit="lots", progress=False)


def test_cli_picks_duckdb_for_a_partitioned_folder(tmp_path, partitioned):
    done = runner.invoke(app, ["prepare", "--data", str(partitioned), "--out", str(tmp_path / "auto"), "--quiet",
                               "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["num_interactions"] == 90274
    memory = runner.invoke(app, ["prepare", "--data", str(partitioned), "--out", str(tmp_path / "memory"),
                                 "--engine", "memory"])
    assert memory.exit_code == 0, memory.output
    assert_same_prepared(tmp_path / "memory", tmp_path / "auto")


def test_cli_duckdb_engine_needs_a_parquet_folder(tmp_path):
    done = runner.invoke(app, ["prepare", "--data", str(shared("ml-100k")), "--out", str(tmp_path / "o"),
                               "--engine", "duckdb"])
    assert done.exit_code == 2
    assert "folder of parquet files" in done.output
