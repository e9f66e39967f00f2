"""Out-of-core prepare: a partitioned parquet dataset too large for memory -> the same prepared folder that
``preprocess.prepare`` + ``save_prepared`` write, built by DuckDB, which aggregates and sorts on disk within a
memory limit. Only per-user and per-item tables (millions of rows, not billions) ever reach Python.

Same result as the in-memory path, row for row: the same filters (counts taken once on the loaded data), the same
vocabulary and user order (ascending ids), the same stable time order (ties keep file order, files sorted by
path: ``data.movielens.partition_files``) and the same leave-one-out split.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from bert4rec import progress as bars
from bert4rec.data.leave_one_out import MIN_EVAL_LENGTH, TEST, TRAIN, VALID
from bert4rec.data.movielens import (
    Columns,
    missing_column,
    movies_beside,
    no_movies_note,
    partition_files,
    placeholder_movies,
)
from bert4rec.data.preprocess import (
    PrepareParams,
    catalogue,
    dataset_stats,
    nothing_left,
    sample_users,
    write_metadata,
)
from bert4rec.data.settings import DEFAULT_MEMORY_LIMIT
from bert4rec.data.vocab import ItemVocab
from bert4rec.errors import DataError
from bert4rec.files import INTERACTIONS_FILE, write_dir_atomically

_INTEGER_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT",
                  "HUGEINT"}
_SORT_KEY = "{'t': ts, 'f': file_index, 'r': row_number}"  # unique per row: the stable time order


def prepare_partitioned(folder: Path, out: Path, params: PrepareParams | None = None,
                        columns: Columns | None = None, memory_limit: str = DEFAULT_MEMORY_LIMIT,
                        threads: int | None = None,
                        temp_dir: Path | None = None, progress: bool = True, source: str | None = None) -> dict:
    """Prepare ``folder`` (parquet files at any depth, optionally a movies file beside them) into ``out``;
    returns the dataset's stats. ``memory_limit`` bounds DuckDB's buffers; what does not fit spills to
    ``temp_dir`` (the system's temporary folder by default). ``source`` names the data in errors and stats (default:
    the folder)."""
    params, columns = params or PrepareParams(), columns or Columns()
    params.validate()
    folder = Path(folder)
    source = source or str(folder)
    files = partition_files(folder)
    if not files:
        raise DataError(f"{source}: no parquet files found")
    stats: dict = {}

    def write(tmp: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="bert4rec-spill-", dir=temp_dir) as spill:
            try:
                with duckdb.connect(config={"memory_limit": memory_limit, "temp_directory": spill,
                                            **({"threads": threads} if threads else {})}) as con:
                    con.execute("SET enable_progress_bar = false")  # it would write to stdout, over --json output
                    stats.update(_build(con, folder, source, files, params, columns, tmp, progress))
            except duckdb.OutOfMemoryException as exc:
                raise DataError(f"{source}: out of memory within --memory-limit {memory_limit} "
                                f"({_first_line(exc)}); raise the limit or free disk in the temporary folder") from None
            except duckdb.Error as exc:
                raise DataError(f"{source}: {_first_line(exc)}") from None

    write_dir_atomically(Path(out), write)
    return stats


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0]


def _build(con, folder: Path, source: str, files: list[str], params: PrepareParams, columns: Columns, tmp: Path,
           progress: bool) -> dict:
    """The four steps, each a few SQL statements over the views the one before it left."""
    with bars.bar(None, progress, total=4, desc="prepare (out of core)", unit="step") as steps:
        steps.set_postfix_str("reading and checking")
        num_raw = _read_rows(con, source, files, params, columns)
        user_filter = _filter_rows(con, params)
        steps.update()
        steps.set_postfix_str("users and vocabulary")
        users, vocab = _users_and_vocabulary(con, source, params, user_filter)
        steps.update()
        steps.set_postfix_str("sorting and writing interactions")
        _write_interactions(con, tmp / INTERACTIONS_FILE)
        steps.update()
        steps.set_postfix_str("catalogue and stats")
        movies = movies_beside(folder, columns)
        notes = [] if movies is not None else [no_movies_note(folder)]
        movies = movies if movies is not None else placeholder_movies(vocab.item_ids)
        stats = dataset_stats(source, params, users["n"].astype(np.int64), vocab.num_items, num_raw,
                              (int(users["first_ts"].min()), int(users["last_ts"].max())), notes)
        write_metadata(tmp, catalogue(movies, vocab), vocab, stats)
        steps.update()
    return stats


def _read_rows(con, source: str, files: list[str], params: PrepareParams, columns: Columns) -> int:
    """View ``rated``: every row with canonical columns, its file's index and its row number, the rating filter
    applied. Returns the number of rows loaded."""
    con.register("file_list", pa.table({"filename": files, "file_index": np.arange(len(files), dtype=np.int32)}))
    con.execute("CREATE TEMP TABLE files AS SELECT * FROM file_list")
    con.execute(f"CREATE TEMP VIEW raw AS SELECT * FROM read_parquet({_list_literal(files)}, filename=true, "
                "file_row_number=true, union_by_name=true)")
    types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE raw)").fetchall())
    expressions = _column_expressions(types, columns, source)
    if params.min_rating is not None and expressions["rating"][0].startswith("NULL"):
        raise DataError(f"{source}: --min-rating given but the data has no ratings")
    num_raw = _check_values(con, expressions, source)
    rating_filter = "" if params.min_rating is None else f"WHERE rating >= {float(params.min_rating)!r}"
    con.execute(f"""CREATE TEMP VIEW rated AS
        SELECT {expressions['user_id'][0]} AS user_id, {expressions['item_id'][0]} AS item_id,
               {expressions['rating'][0]} AS rating, {expressions['ts'][0]} AS ts,
               f.file_index, raw.file_row_number AS row_number
        FROM raw JOIN files f USING (filename) {rating_filter}""")
    return num_raw


def _filter_rows(con, params: PrepareParams) -> str:
    """View ``kept``: the users and items with enough interactions. Returns the SQL condition that keeps the
    sampled users (empty when all are kept)."""
    # Both counts are taken once, on the data as loaded, as in preprocess.prepare.
    con.execute("CREATE TEMP TABLE ok_users AS SELECT user_id FROM rated GROUP BY user_id "
                f"HAVING count(*) >= {params.min_user_interactions}")
    con.execute("CREATE TEMP TABLE ok_items AS SELECT item_id FROM rated GROUP BY item_id "
                f"HAVING count(*) >= {params.min_item_interactions}")
    con.execute("""CREATE TEMP VIEW kept AS SELECT * FROM rated
        WHERE user_id IN (SELECT user_id FROM ok_users) AND item_id IN (SELECT item_id FROM ok_items)""")
    if not params.samples_users:
        return ""
    present = con.execute("SELECT DISTINCT user_id FROM kept ORDER BY user_id").fetchnumpy()["user_id"]
    con.register("chosen", pa.table({"user_id": sample_users(present, params)}))
    return "WHERE user_id IN (SELECT user_id FROM chosen)"


def _users_and_vocabulary(con, source: str, params: PrepareParams, user_filter: str) -> tuple[dict, ItemVocab]:
    """Tables ``users`` (index in id order, count, the last two sort keys, time range) and ``vocab``."""
    con.execute(f"""CREATE TEMP TABLE users AS
        SELECT user_id, (row_number() OVER (ORDER BY user_id) - 1)::INTEGER AS user_idx, n, last2, first_ts, last_ts
        FROM (SELECT user_id, count(*) AS n, max({_SORT_KEY}, 2) AS last2, min(ts) AS first_ts, max(ts) AS last_ts
              FROM kept {user_filter} GROUP BY user_id)""")
    users = con.execute("SELECT n, first_ts, last_ts FROM users ORDER BY user_idx").fetchnumpy()
    if len(users["n"]) == 0:
        raise nothing_left(source, params)
    con.execute("""CREATE TEMP TABLE vocab AS
        SELECT item_id, (row_number() OVER (ORDER BY item_id))::INTEGER AS item
        FROM (SELECT DISTINCT item_id FROM kept WHERE user_id IN (SELECT user_id FROM users))""")
    return users, ItemVocab.from_items(con.execute("SELECT item_id FROM vocab ORDER BY item").fetchnumpy()["item_id"])


def _write_interactions(con, path: Path) -> None:
    """The interactions table in (user, stable time) order with its leave-one-out split, sorted on disk."""
    target = str(path).replace("'", "''")
    con.execute(f"""COPY (
        SELECT u.user_idx, v.item, k.user_id, k.item_id, k.rating::FLOAT AS rating, k.ts AS "timestamp",
               (CASE WHEN u.n < {MIN_EVAL_LENGTH} THEN {TRAIN}
                     WHEN {_SORT_KEY} = u.last2[1] THEN {TEST}
                     WHEN {_SORT_KEY} = u.last2[2] THEN {VALID}
                     ELSE {TRAIN} END)::TINYINT AS split
        FROM kept k JOIN users u USING (user_id) JOIN vocab v USING (item_id)
        ORDER BY u.user_idx, k.ts, k.file_index, k.row_number
    ) TO '{target}' (FORMAT parquet, ROW_GROUP_SIZE 1048576)""")


def _list_literal(files: list[str]) -> str:
    return "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"


def _column_expressions(types: dict[str, str], columns: Columns, source: str) -> dict[str, tuple[str, str]]:
    """For each canonical column: (SQL value expression, SQL condition that flags a bad value)."""
    def need(name: str) -> str:
        if name not in types:
            raise missing_column(source, name, [c for c in types if c not in ("filename", "file_row_number")])
        return '"' + name.replace('"', '""') + '"'

    def integer(name: str) -> tuple[str, str]:
        column = need(name)
        if types[name] in _INTEGER_TYPES:
            return f"{column}::BIGINT", f"{column} IS NULL"
        if types[name].startswith("TIMESTAMP"):
            return f"floor(epoch({column}))::BIGINT", f"{column} IS NULL"
        number = f"TRY_CAST({column} AS DOUBLE)"
        return f"{number}::BIGINT", f"{number} IS NULL OR NOT isfinite({number}) OR {number} <> round({number})"

    expressions = {"user_id": integer(columns.user), "item_id": integer(columns.item),
                   "ts": integer(columns.timestamp)}
    if columns.rating is not None and columns.rating in types:
        column = need(columns.rating)
        number = f"TRY_CAST({column} AS DOUBLE)"  # an empty rating (NULL, NaN) means not rated, as in memory
        expressions["rating"] = (f"(CASE WHEN isnan({number}) THEN NULL ELSE {number} END)::FLOAT",
                                 f"{column} IS NOT NULL AND ({number} IS NULL OR isinf({number}))")
    elif columns.rating is not None and columns.rating != Columns.rating:
        need(columns.rating)  # raises: a rating column was named but is not there
    else:
        expressions["rating"] = ("NULL::FLOAT", "false")
    return expressions


def _check_values(con, expressions: dict[str, tuple[str, str]], source: str) -> int:
    """Reject missing or non-numeric ids, timestamps and ratings, naming the first bad row; returns the row count."""
    # The first bad row comes from an aggregate FILTER, not a WHERE: DuckDB's parquet filter pushdown misses NaN.
    checks = ", ".join(f"count(*) FILTER (WHERE {bad}), min({{'f': filename, 'r': file_row_number}}) FILTER "
                       f"(WHERE {bad})" for _, bad in expressions.values())
    row = con.execute(f"SELECT count(*), {checks} FROM raw").fetchone()
    if row[0] == 0:
        raise DataError(f"{source}: no rows")
    for i, name in enumerate(expressions):
        count, first = row[1 + 2 * i], row[2 + 2 * i]
        if count:
            raise DataError(f"{first['f']}: row {first['r'] + 1}: missing or invalid {name} ({count} such rows in all)")
    return int(row[0])
