from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bert4rec.data import movielens
from bert4rec.errors import DataError


def zip_folder(folder: Path, out: Path, inner: str) -> Path:
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.iterdir()):
            archive.write(path, f"{inner}/{path.name}")
    return out


def test_ml1m_dat_layout(ml_1m):
    raw = movielens.load(ml_1m)
    assert len(raw.ratings) == 1_000_209
    assert raw.ratings["user_id"].nunique() == 6040
    assert list(raw.ratings.columns) == ["user_id", "item_id", "rating", "timestamp"]
    # source order is kept: the first line of ratings.dat is 1::1193::5::978300760
    assert raw.ratings.iloc[0].tolist() == [1, 1193, 5.0, 978300760]
    movies = raw.movies.set_index("item_id")
    assert len(movies) == 3883
    assert movies.loc[1, "title"] == "Toy Story (1995)" and movies.loc[1, "year"] == 1995
    assert movies.loc[1, "genres"] == "Animation|Children's|Comedy"
    assert movies.loc[73, "title"] == "Misérables, Les (1995)"  # latin-1 decoded


def test_ml100k_layout(ml_100k):
    raw = movielens.load(ml_100k)
    assert len(raw.ratings) == 100_000
    assert raw.ratings["user_id"].nunique() == 943
    movies = raw.movies.set_index("item_id")
    assert len(movies) == 1682
    assert movies.loc[1, "genres"] == "Animation|Children's|Comedy"
    assert movies.loc[2, "title"] == "GoldenEye (1995)" and movies.loc[2, "year"] == 1995


def test_csv_layout_and_its_zip_agree(ml_latest_small, tmp_path):
    raw = movielens.load(ml_latest_small)
    assert len(raw.ratings) == 100_836 and len(raw.movies) == 9742
    assert raw.ratings["rating"].min() == 0.5
    zipped = movielens.load(zip_folder(ml_latest_small, tmp_path / "ml-latest-small.zip", "ml-latest-small"))
    pd.testing.assert_frame_equal(raw.ratings, zipped.ratings)
    pd.testing.assert_frame_equal(raw.movies, zipped.movies)


def test_notebook_parquet_layout(ml_latest_small, tmp_path):
    ratings = pd.read_csv(ml_latest_small / "ratings.csv")
    movies = pd.read_csv(ml_latest_small / "movies.csv")
    ratings.to_parquet(tmp_path / "ratings.parquet")
    movies.to_parquet(tmp_path / "movies.parquet")
    from_folder = movielens.load(tmp_path)
    from_file = movielens.load(tmp_path / "ratings.parquet")
    reference = movielens.load(ml_latest_small)
    pd.testing.assert_frame_equal(from_folder.ratings, reference.ratings)
    pd.testing.assert_frame_equal(from_file.movies, reference.movies)


def test_datetime_timestamps_and_custom_columns(tmp_path):
    table = pd.DataFrame({"uid": [1, 1, 2], "sku": [10, 11, 10],
                          "when": pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-03"])})
    table.to_parquet(tmp_path / "events.parquet")
    raw = movielens.load(tmp_path / "events.parquet", movielens.Columns("uid", "sku", None, "when"))
    assert raw.ratings["timestamp"].tolist() == [1577836800, 1577923200, 1578009600]
    assert raw.ratings["rating"].isna().all()
    assert raw.movies["title"].tolist() == ["item 10", "item 11"]
    assert raw.notes


def test_release_name_uses_data_home_before_network(ml_latest_small, tmp_path, monkeypatch):
    zip_folder(ml_latest_small, tmp_path / "ml-latest-small.zip", "ml-latest-small")
    monkeypatch.setenv("BERT4REC_DATA_HOME", str(tmp_path))

    def no_network(name):
        raise AssertionError("must not download when the data home has the release")

    raw = movielens.load("ml-latest-small", fetch=no_network)
    assert len(raw.ratings) == 100_836


def test_unpacked_folder_in_data_home(ml_1m, monkeypatch):
    monkeypatch.setenv("BERT4REC_DATA_HOME", str(ml_1m.parent))
    assert movielens.find_local_release("ml-1m", ml_1m.parent) == ml_1m
    assert movielens.find_local_release("ml-10m", ml_1m.parent) is None


@pytest.mark.parametrize(
    ("title", "year"),
    [("Toy Story (1995)", 1995), ("Babylon 5", None), ("Fawlty Towers (1975-1979)", 1975),
     ("City of Lost Children, The (Cité des enfants perdus, La) (1995) ", 1995)],
)
def test_parse_year(title, year):
    parsed = movielens.parse_year(pd.Series([title], dtype="string")).iloc[0]
    assert (pd.isna(parsed) and year is None) or parsed == year


# ---------------------------------------------------------------------------------------- bad input


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("ratings_csv", "message"),
    [
        ("userId,movieId,rating,timestamp\n1,2,3.0,100\nx,3,4.0,101\n", "column 'userId', row 2: 'x' is not a number"),
        ("userId,movieId,rating,timestamp\n1,2,3.0,100\n1,,4.0,101\n", "column 'movieId', row 2: missing value"),
        ("userId,movieId,rating,timestamp\n1,2.5,3.0,100\n", "column 'movieId', row 1: 2.5 is not an integer id"),
        ("userId,movieId,rating,timestamp\n1,2,3,1\n1,2,good,1\n", "column 'rating', row 2: 'good' is not a number"),
        ("userId,movieId,rating,timestamp\n1,2,inf,100\n", "column 'rating', row 1: inf is not finite"),
        ("userId,item,rating,timestamp\n1,2,3.0,100\n", "missing column 'movieId'"),
        ("userId,movieId,rating,timestamp\n", "no rows"),
        ("", "file is empty"),
    ],
)
def test_malformed_ratings_name_file_column_and_row(tmp_path, ratings_csv, message):
    path = write(tmp_path / "ratings.csv", ratings_csv)
    with pytest.raises(DataError) as info:
        movielens.load(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_corrupt_zip(tmp_path):
    path = tmp_path / "ml-1m.zip"
    path.write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(DataError, match="not a readable zip"):
        movielens.load(path)


def test_truncated_zip_member(ml_latest_small, tmp_path):
    good = zip_folder(ml_latest_small, tmp_path / "good.zip", "ml-latest-small").read_bytes()
    bad = tmp_path / "ml-latest-small.zip"
    bad.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError):
        movielens.load(bad)


def test_unknown_names_and_missing_files(tmp_path):
    with pytest.raises(DataError, match="not a MovieLens release"):
        movielens.load("ml-2b")
    with pytest.raises(DataError, match="no MovieLens files found"):
        movielens.load(tmp_path)
    with pytest.raises(DataError, match="unsupported file type"):
        movielens.load(write(tmp_path / "notes.txt", "hello"))


def test_duplicate_movie_ids(tmp_path):
    write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4,1\n")
    write(tmp_path / "movies.csv", "movieId,title,genres\n1,A (2000),Drama\n1,B (2001),Comedy\n")
    with pytest.raises(DataError, match="row 2: duplicate id 1"):
        movielens.load(tmp_path)


def test_huge_and_negative_ids_are_kept_exactly(tmp_path):
    big = 2**62 + 1
    write(tmp_path / "ratings.csv", f"userId,movieId,rating,timestamp\n-5,{big},4,1\n")
    raw = movielens.load(tmp_path / "ratings.csv")
    assert raw.ratings["user_id"].iloc[0] == -5
    assert raw.ratings["item_id"].to_numpy()[0] == np.int64(big)


def test_missing_column_error_stays_on_one_line_whatever_the_header_holds(tmp_path):
    (tmp_path / "ratings.csv").write_text('"user\nid",movieId,rating,timestamp\n1,2,3,4\n')
    with pytest.raises(DataError) as caught:
        movielens.load(tmp_path / "ratings.csv")
    assert "missing column 'userId'" in str(caught.value) and "\n" not in str(caught.value)
    assert "user\\nid" in str(caught.value)


def test_rating_too_large_for_float32_is_a_clear_error(tmp_path):
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,2,3,4\n1,3,1e39,5\n")
    with pytest.raises(DataError, match="row 2: 1e\\+39 is out of range"):
        movielens.load(tmp_path / "ratings.csv")
