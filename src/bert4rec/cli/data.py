"""Data commands: ``download`` a MovieLens release, ``prepare`` a dataset into the folder training reads."""

from __future__ import annotations

import enum
import json
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from bert4rec.cli.main import QuietOption, SeedOption, command, console
from bert4rec.cli.tables import stats_table
from bert4rec.data.settings import DEFAULT_MEMORY_LIMIT, Columns, PrepareParams
from bert4rec.errors import Bert4RecError


class Engine(str, enum.Enum):
    auto = "auto"
    memory = "memory"
    duckdb = "duckdb"

DataOption = Annotated[str, typer.Option(
    "--data", help="A MovieLens release name (ml-1m, ml-latest-small, ...), a release folder or zip, a ratings "
                   ".parquet/.csv file, a folder holding ratings.parquet/csv and movies.parquet/csv, or a "
                   "partitioned parquet dataset (a folder of parquet files, movies.parquet/csv optional), or an "
                   "event store's URL (sqlite:///events.db, postgresql+psycopg://...): its events now, read out of "
                   "core.")]
UserColOption = Annotated[str, typer.Option(help="User id column of a custom ratings table.")]
ItemColOption = Annotated[str, typer.Option(help="Item (movie) id column of a custom ratings table.")]
RatingColOption = Annotated[str, typer.Option(help="Rating column of a custom ratings table ('' for none).")]
TimeColOption = Annotated[str, typer.Option(help="Timestamp column of a custom ratings table.")]
MinRatingOption = Annotated[float | None, typer.Option(
    help="Drop ratings below this value (default: keep all, as the BERT4Rec paper does).")]
MinUserOption = Annotated[int, typer.Option(help="Keep users with at least this many interactions.")]
MinItemOption = Annotated[int, typer.Option(help="Keep items with at least this many interactions.")]
SampleUsersOption = Annotated[float | None, typer.Option(
    help="Keep this fraction of users (whole users, seeded) for quick experiments.")]


@command("download")
def download_command(
    name: Annotated[str, typer.Argument(help="Release: ml-100k, ml-1m, ml-10m, ml-20m, ml-25m, ml-32m, "
                                             "ml-latest, ml-latest-small.")],
    cache_dir: Annotated[Path | None, typer.Option(
        help="Where zips are kept (default: $BERT4REC_CACHE_DIR, else the user cache folder).")] = None,
    force: Annotated[bool, typer.Option(help="Download again even if the zip is cached.")] = False,
) -> None:
    """Download a MovieLens release zip from GroupLens into the cache (checked, then moved into place)."""
    from bert4rec.data.download import download

    path = download(name, cache_dir, force=force)
    console.print(f"{name}: {path}")


@command("prepare")
def prepare_command(
    data: DataOption,
    out: Annotated[Path, typer.Option(help="Output folder (replaced only once the new one is complete).")],
    min_rating: MinRatingOption = None,
    min_user: MinUserOption = PrepareParams.min_user_interactions,
    min_item: MinItemOption = PrepareParams.min_item_interactions,
    sample_users: SampleUsersOption = None,
    seed: SeedOption = PrepareParams.seed,
    user_col: UserColOption = Columns.user,
    item_col: ItemColOption = Columns.item,
    rating_col: RatingColOption = Columns.rating,
    time_col: TimeColOption = Columns.timestamp,
    as_json: Annotated[bool, typer.Option("--json", help="Print stats.json instead of a table.")] = False,
    engine: Annotated[Engine, typer.Option(
        help="memory: pandas, everything in RAM. duckdb: out of core, for a partitioned parquet dataset (a folder "
             "of parquet files) larger than memory; same result. auto: duckdb for such a folder, else memory.")
    ] = Engine.auto,
    memory_limit: Annotated[str, typer.Option(
        help="duckdb engine: memory for its buffers (e.g. 4GB); the rest spills to --temp-dir.")]
    = DEFAULT_MEMORY_LIMIT,
    temp_dir: Annotated[Path | None, typer.Option(
        help="duckdb engine: where to spill (default: the system's temporary folder).")] = None,
    quiet: QuietOption = False,
) -> None:
    """Filter a dataset, sort each user's history by time and split it leave-one-out; write parquet + stats."""
    from bert4rec.data import movielens, preprocess

    columns = Columns(user_col, item_col, rating_col or None, time_col)
    params = PrepareParams(min_rating, min_user, min_item, sample_users, seed)
    partitioned = not is_store(data) and movielens.is_partitioned(Path(data))
    if is_store(data):
        if engine == Engine.memory:
            raise Bert4RecError(f"{data}: an event store is read out of core; leave --engine at auto or duckdb")
        from bert4rec.store import prepare_from_store

        stats = prepare_from_store(data, out, params, memory_limit, temp_dir, progress=not quiet)
    elif engine == Engine.duckdb or (engine == Engine.auto and partitioned):
        if not partitioned:
            raise Bert4RecError(f"{data}: --engine duckdb reads a folder of parquet files (a partitioned dataset)")
        from bert4rec.data.outofcore import prepare_partitioned

        stats = prepare_partitioned(Path(data), out, params, columns, memory_limit, temp_dir=temp_dir,
                                    progress=not quiet)
    else:
        dataset = preprocess.prepare(movielens.load(data, columns), params)
        preprocess.save_prepared(dataset, out)
        stats = dataset.stats
    if as_json:
        sys.stdout.write(json.dumps(stats, indent=2) + "\n")
    else:
        console.print(stats_table(stats))
        console.print(f"written to {out}")


def is_store(data: str) -> bool:
    """Whether ``--data`` names an event store (a database URL) rather than a file, folder or release."""
    return "://" in data


def load_dataset(data: str, progress: bool = False):
    """A prepared folder as it is, or any other dataset prepared on the fly with the default settings (an event
    store out of core, as ``prepare`` does)."""
    from bert4rec.data import movielens, preprocess

    if is_store(data):
        from bert4rec.store import prepare_from_store

        with tempfile.TemporaryDirectory(prefix="bert4rec-prepared-") as tmp:
            prepare_from_store(data, Path(tmp) / "prepared", progress=progress)
            return preprocess.load_prepared(Path(tmp) / "prepared")
    if preprocess.is_prepared_dir(Path(data)):
        return preprocess.load_prepared(Path(data))
    return preprocess.prepare(movielens.load(data))
