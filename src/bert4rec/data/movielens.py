"""Read every MovieLens release, and any ratings/movies table, into two canonical tables.

``ratings``: user_id (int64), item_id (int64), rating (float32, NaN when the source has none), timestamp (int64
seconds), in the source file's row order — that order breaks timestamp ties later, so it is never shuffled here.

``movies``: item_id (int64), title (str), year (Int64, parsed from the title), genres (str, ``|``-separated).

A dataset is named by a path (a release folder, a release zip, a ratings file or a folder holding
``ratings.{parquet,csv}`` and ``movies.{parquet,csv}``) or by a release name (``ml-1m``), which is looked up in
the data home, then in the download cache, then downloaded from GroupLens.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from bert4rec.data.download import fetch as download_release
from bert4rec.data.item_features import NO_GENRES
from bert4rec.data.releases import RELEASES, data_home, find_local_release
from bert4rec.data.settings import Columns
from bert4rec.errors import DataError
from bert4rec.files import INTERACTIONS_FILE, STATS_FILE

ML100K_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
]
TITLE_YEAR = re.compile(r"\s*\((\d{4})(?:\s*[-–]\s*\d{0,4})?\)\s*$")  # "Heat (1995)", "Dekalog (1989-1990)"


@dataclass
class RawDataset:
    """What a reader returns: canonical ratings and movies tables plus where they came from."""

    ratings: pd.DataFrame
    movies: pd.DataFrame
    source: str
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------- containers


class _Container:
    """A release folder or zip, seen as a set of files found by base name."""

    def __init__(self, path: Path):
        self.path = path
        if path.is_dir():
            self._members = {p.name: p for p in sorted(path.rglob("*")) if p.is_file()}
            self._zip = None
        else:
            try:
                self._zip = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as exc:
                raise DataError(f"{path}: not a readable zip file ({exc})") from None
            self._members = {Path(n).name: n for n in self._zip.namelist() if not n.endswith("/")}

    def has(self, name: str) -> bool:
        return name in self._members

    def label(self, name: str) -> str:
        member = self._members[name]
        return str(member) if self._zip is None else f"{self.path}:{member}"

    def read(self, name: str) -> bytes:
        try:
            if self._zip is None:
                return Path(self._members[name]).read_bytes()
            return self._zip.read(self._members[name])
        except (zipfile.BadZipFile, OSError, EOFError, zipfile.LargeZipFile) as exc:
            raise DataError(f"{self.label(name)}: cannot read ({exc})") from None


# --------------------------------------------------------------------------------------------- parsing


def _decode(raw: bytes) -> str:
    # ml-1m and ml-100k are latin-1; newer releases are UTF-8. UTF-8 is strict enough to tell them apart.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _to_utf8(raw: bytes) -> bytes:
    return raw if raw.isascii() else _decode(raw).encode("utf-8")


def _read_delimited(raw: bytes, label: str, delimiter: str, names: list[str] | None, quoted: bool) -> pd.DataFrame:
    """Parse delimited bytes with pyarrow (fast on tens of millions of rows) into a DataFrame."""
    if not raw.strip():
        raise DataError(f"{label}: file is empty")
    raw = _to_utf8(raw)
    read_options = pacsv.ReadOptions(column_names=names, block_size=1 << 26)
    parse_options = pacsv.ParseOptions(delimiter=delimiter, quote_char='"' if quoted else False)
    try:
        table = pacsv.read_csv(io.BytesIO(raw), read_options=read_options, parse_options=parse_options)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise DataError(f"{label}: cannot parse ({first_line})") from None
    return table.to_pandas()


def _read_double_colon(raw: bytes, label: str, names: list[str]) -> pd.DataFrame:
    """The ``::``-separated ``.dat`` layout of ml-1m and ml-10m (no header, no quoting)."""
    text = _decode(raw)
    if "\t" in text:
        raise DataError(f"{label}: unexpected tab character in a '::'-separated file")
    return _read_delimited(text.replace("::", "\t").encode("utf-8"), label, "\t", names, quoted=False)


def _read_table_file(raw: bytes, name: str, label: str) -> pd.DataFrame:
    if name.endswith(".parquet"):
        try:
            return pq.read_table(io.BytesIO(raw)).to_pandas()
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{label}: not a readable parquet file ({exc})") from None
    return _read_delimited(raw, label, ",", None, quoted=True)


def missing_column(label: str, column: str, present) -> DataError:
    """The error for a missing column, listing those present on one line whatever their names hold."""
    listed = ", ".join(repr(str(c))[1:-1] for c in present)
    return DataError(f"{label}: missing column '{column}' (columns are: {listed})")


def _first_bad_row(original: pd.Series, numeric: pd.Series, missing_ok: bool = False) -> tuple[int, object] | None:
    bad = numeric.isna().to_numpy()
    if missing_ok:
        bad = bad & original.notna().to_numpy()
    if not bad.any():
        return None
    row = int(np.flatnonzero(bad)[0])
    return row, original.iloc[row]


def _numeric_column(df: pd.DataFrame, column: str, label: str, integer: bool, missing_ok: bool = False) -> np.ndarray:
    """Validate one column as numbers (integers for ids), naming the first offending row on failure; with
    ``missing_ok``, an empty value (None, NaN) is allowed and read as NaN."""
    if column not in df.columns:
        raise missing_column(label, column, df.columns)
    values = df[column]
    if pd.api.types.is_datetime64_any_dtype(values):
        if values.isna().any():
            row = int(np.flatnonzero(values.isna().to_numpy())[0])
            raise DataError(f"{label}: column '{column}', row {row + 1}: missing value")
        return values.astype("datetime64[s]").astype("int64").to_numpy()
    numeric = pd.to_numeric(values, errors="coerce") if not pd.api.types.is_numeric_dtype(values) else values
    bad = _first_bad_row(values, numeric, missing_ok)
    if bad is not None:
        row, value = bad
        what = "missing value" if pd.isna(value) else f"{value!r} is not a number"
        raise DataError(f"{label}: column '{column}', row {row + 1}: {what}")
    array = numeric.to_numpy()
    if integer and array.dtype.kind == "f":
        fractional = ~np.isfinite(array) | (array != np.round(array)) | (np.abs(array) >= 2**63)
        if fractional.any():
            row = int(np.flatnonzero(fractional)[0])
            raise DataError(f"{label}: column '{column}', row {row + 1}: {array[row].item()!r} is not an integer id")
    if integer:
        return array.astype(np.int64)
    array = numeric.to_numpy(dtype=np.float64, na_value=np.nan)  # NaN only where missing_ok allowed it
    if np.isinf(array).any():
        row = int(np.flatnonzero(np.isinf(array))[0])
        raise DataError(f"{label}: column '{column}', row {row + 1}: {array[row].item()!r} is not finite")
    return array


def canonical_ratings(df: pd.DataFrame, label: str, columns: Columns = Columns()) -> pd.DataFrame:
    """Validate a ratings table and return it with canonical names and dtypes, rows in source order."""
    if len(df) == 0:
        raise DataError(f"{label}: no rows")
    if columns.rating is not None and columns.rating in df.columns:
        rating = _numeric_column(df, columns.rating, label, integer=False, missing_ok=True)  # empty: not rated
        huge = np.flatnonzero(np.abs(rating) > np.finfo(np.float32).max)  # would become inf as float32
        if len(huge):
            raise DataError(f"{label}: column '{columns.rating}', row {huge[0] + 1}: {rating[huge[0]].item()!r} "
                            "is out of range for a rating")
        rating = rating.astype(np.float32)
    elif columns.rating is not None and columns.rating != Columns.rating:
        raise missing_column(label, columns.rating, df.columns)
    else:
        rating = np.full(len(df), np.nan, dtype=np.float32)
    return pd.DataFrame(
        {
            "user_id": _numeric_column(df, columns.user, label, integer=True),
            "item_id": _numeric_column(df, columns.item, label, integer=True),
            "rating": rating,
            "timestamp": _numeric_column(df, columns.timestamp, label, integer=True),
        }
    )


def parse_year(titles: pd.Series) -> pd.Series:
    """Release year from a MovieLens title such as ``Toy Story (1995)``; missing when absent."""
    years = titles.str.extract(TITLE_YEAR, expand=False)
    return pd.to_numeric(years, errors="coerce").astype("Int64")


def canonical_movies(df: pd.DataFrame, label: str, columns: Columns = Columns()) -> pd.DataFrame:
    for column in (columns.item, columns.title):
        if column not in df.columns:
            raise missing_column(label, column, df.columns)
    item_id = _numeric_column(df, columns.item, label, integer=True)
    titles = df[columns.title].astype("string").fillna("").str.strip()
    genres = df[columns.genres].astype("string").fillna(NO_GENRES) if columns.genres in df.columns else NO_GENRES
    movies = pd.DataFrame({"item_id": item_id, "title": titles, "year": parse_year(titles), "genres": genres})
    duplicated = movies["item_id"].duplicated()
    if duplicated.any():
        row = int(np.flatnonzero(duplicated.to_numpy())[0])
        raise DataError(f"{label}: column '{columns.item}', row {row + 1}: duplicate id {item_id[row]}")
    return movies


def placeholder_movies(item_ids: np.ndarray) -> pd.DataFrame:
    """A movies table for data that came without one: titles are the ids."""
    ids = np.unique(item_ids)
    titles = pd.Series([f"item {i}" for i in ids], dtype="string")
    return pd.DataFrame({"item_id": ids, "title": titles, "year": pd.array([pd.NA] * len(ids), "Int64"),
                         "genres": pd.Series([NO_GENRES] * len(ids), dtype="string")})


# --------------------------------------------------------------------------------------------- readers


def _read_ml100k(box: _Container) -> RawDataset:
    ratings = _read_delimited(box.read("u.data"), box.label("u.data"), "\t",
                              ["user_id", "item_id", "rating", "timestamp"], quoted=False)
    ratings = canonical_ratings(ratings, box.label("u.data"), Columns("user_id", "item_id", "rating", "timestamp"))
    genres = ML100K_GENRES
    if box.has("u.genre"):
        listed = [line.split("|")[0] for line in _decode(box.read("u.genre")).splitlines() if line.strip()]
        genres = listed or genres
    names = ["movieId", "title", "release", "video", "imdb", *genres]
    items = _read_delimited(box.read("u.item"), box.label("u.item"), "|", names, quoted=False)
    flags = items[list(genres)].fillna(0).to_numpy(dtype=bool)
    joined = ["|".join(g for g, f in zip(genres, row, strict=True) if f) or NO_GENRES for row in flags]
    items["genres"] = joined
    return RawDataset(ratings, canonical_movies(items, box.label("u.item")), str(box.path))


def _read_dat(box: _Container) -> RawDataset:
    ratings = _read_double_colon(box.read("ratings.dat"), box.label("ratings.dat"),
                                 ["userId", "movieId", "rating", "timestamp"])
    ratings = canonical_ratings(ratings, box.label("ratings.dat"))
    movies = _read_double_colon(box.read("movies.dat"), box.label("movies.dat"), ["movieId", "title", "genres"])
    return RawDataset(ratings, canonical_movies(movies, box.label("movies.dat")), str(box.path))


def _read_tables(box: _Container, columns: Columns) -> RawDataset:
    ratings_name = next(n for n in ("ratings.parquet", "ratings.csv") if box.has(n))
    ratings = canonical_ratings(_read_table_file(box.read(ratings_name), ratings_name, box.label(ratings_name)),
                                box.label(ratings_name), columns)
    movies_name = next((n for n in ("movies.parquet", "movies.csv") if box.has(n)), None)
    if movies_name is None:
        return RawDataset(ratings, placeholder_movies(ratings["item_id"].to_numpy()), str(box.path),
                          [no_movies_note(box.path)])
    raw = _read_table_file(box.read(movies_name), movies_name, box.label(movies_name))
    return RawDataset(ratings, canonical_movies(raw, box.label(movies_name), columns), str(box.path))


def partition_files(folder: Path) -> list[str]:
    """The ratings files of a partitioned parquet dataset (a folder of ``*.parquet`` files at any depth, hive-style
    or not; ``movies.parquet`` excluded), sorted by path: this order breaks timestamp ties, whatever the engine."""
    files = [str(p) for p in Path(folder).rglob("*.parquet") if p.name != "movies.parquet" and p.is_file()]
    return sorted(files)


def movies_beside(folder: Path, columns: Columns = Columns()) -> pd.DataFrame | None:
    """The ``movies.parquet`` / ``movies.csv`` in a partitioned dataset's folder, if there is one."""
    for name in ("movies.parquet", "movies.csv"):
        path = Path(folder) / name
        if path.is_file():
            return canonical_movies(_read_table_file(path.read_bytes(), name, str(path)), str(path), columns)
    return None


def no_movies_note(folder: Path) -> str:
    return f"{folder}: no movies.parquet or movies.csv; titles are item ids"


def read_partitioned(folder: Path, columns: Columns = Columns()) -> RawDataset:
    """A partitioned parquet dataset read into memory (``outofcore.prepare_partitioned`` handles larger ones)."""
    files = partition_files(folder)
    wanted = [c for c in (columns.user, columns.item, columns.rating, columns.timestamp) if c is not None]
    tables = []
    for file in files:
        try:
            schema = pq.read_schema(file)
            tables.append(pq.read_table(file, columns=[c for c in wanted if c in schema.names]))
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{file}: not a readable parquet file ({exc})") from None
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowException, ValueError) as exc:
        raise DataError(f"{folder}: the parquet files do not share a schema ({exc})") from None
    ratings = canonical_ratings(table.to_pandas(), str(folder), columns)
    movies = movies_beside(folder, columns)
    if movies is None:
        return RawDataset(ratings, placeholder_movies(ratings["item_id"].to_numpy()), str(folder),
                          [no_movies_note(folder)])
    return RawDataset(ratings, movies, str(folder))


def is_partitioned(path: Path) -> bool:
    """Whether ``path`` is a partitioned parquet dataset rather than a release or notebook-layout folder."""
    if not Path(path).is_dir() or not partition_files(path):
        return False
    box = _Container(Path(path))
    prepared = box.has(STATS_FILE) and box.has(INTERACTIONS_FILE)  # bert4rec prepare's own output
    return not prepared and not any(box.has(n) for n in ("u.data", "ratings.dat", "ratings.parquet", "ratings.csv"))


def read_container(path: Path, columns: Columns = Columns()) -> RawDataset:
    """Read a release folder or zip, a folder in the notebook's ratings/movies layout, or a partitioned parquet
    dataset (a folder of parquet files)."""
    box = _Container(path)
    if box.has("u.data") and box.has("u.item"):
        return _read_ml100k(box)
    if box.has("ratings.dat") and box.has("movies.dat"):
        return _read_dat(box)
    if box.has("ratings.parquet") or box.has("ratings.csv"):
        return _read_tables(box, columns)
    if is_partitioned(path):
        return read_partitioned(path, columns)
    raise DataError(
        f"{path}: no MovieLens files found (expected u.data + u.item, ratings.dat + movies.dat, "
        "ratings.parquet/ratings.csv, or a folder of parquet files)"
    )


def read_ratings_file(path: Path, columns: Columns = Columns()) -> RawDataset:
    """Read one ratings file (parquet or CSV, any column names via ``columns``) and a movies file beside it."""
    ratings = canonical_ratings(_read_table_file(path.read_bytes(), path.name, str(path)), str(path), columns)
    for name in ("movies.parquet", "movies.csv"):
        sibling = path.with_name(name)
        if sibling.is_file() and sibling != path:
            raw = _read_table_file(sibling.read_bytes(), name, str(sibling))
            return RawDataset(ratings, canonical_movies(raw, str(sibling), columns), str(path))
    return RawDataset(ratings, placeholder_movies(ratings["item_id"].to_numpy()), str(path),
                      [no_movies_note(path.parent)])


# --------------------------------------------------------------------------------------------- resolution


def load(
    spec: str | os.PathLike,
    columns: Columns = Columns(),
    fetch: Callable[[str], Path] | None = None,
) -> RawDataset:
    """Load a dataset named by a path or a release name.

    A release name is looked up in ``$BERT4REC_DATA_HOME`` first; otherwise ``fetch(name)`` (by default
    :func:`bert4rec.data.download.fetch`, which uses the download cache) provides the zip.
    """
    path = Path(spec).expanduser()
    if path.is_dir():
        return read_container(path, columns)
    if path.is_file():
        if path.suffix == ".zip":
            return read_container(path, columns)
        if path.suffix in {".parquet", ".csv"}:
            return read_ratings_file(path, columns)
        if path.name in {"u.data", "ratings.dat"}:
            return read_container(path.parent, columns)
        raise DataError(f"{path}: unsupported file type (expected a folder, .zip, .parquet, .csv or .dat)")
    name = str(spec)
    if name not in RELEASES:
        raise DataError(f"{name}: no such file or folder, and not a MovieLens release ({', '.join(RELEASES)})")
    local = find_local_release(name, data_home())
    if local is not None:
        return read_container(local, columns)
    return read_container((fetch or download_release)(name), columns)
