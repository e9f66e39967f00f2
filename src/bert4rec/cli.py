"""The ``bert4rec`` command: thin typer commands over the library modules."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from bert4rec.errors import Bert4RecError

app = typer.Typer(
    help="BERT4Rec movie recommender: get MovieLens, prepare it, train, evaluate and recommend.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)


def command(*args, **kwargs):
    """Register a command whose expected failures print one line and exit with status 2."""

    def wrap(func):
        @functools.wraps(func)
        def run(*a, **kw):
            try:
                return func(*a, **kw)
            except Bert4RecError as exc:
                err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
                raise typer.Exit(2) from None
            except KeyboardInterrupt:
                err_console.print("interrupted")
                raise typer.Exit(130) from None

        return app.command(*args, **kwargs)(run)

    return wrap


# ------------------------------------------------------------------------------------------------ data

DataOption = Annotated[str, typer.Option(
    "--data", help="A MovieLens release name (ml-1m, ml-latest-small, ...), a release folder or zip, a ratings "
                   ".parquet/.csv file, or a folder holding ratings.parquet/csv and movies.parquet/csv.")]
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
SeedOption = Annotated[int, typer.Option(help="Random seed.")]


def _stats_table(stats: dict) -> Table:
    table = Table(title="prepared dataset", show_header=False)
    lengths = stats["sequence_length"]
    rows = [
        ("source", stats["source"]),
        ("users", f"{stats['num_users']:,}"),
        ("items", f"{stats['num_items']:,}"),
        ("interactions", f"{stats['num_interactions']:,} (of {stats['num_raw_interactions']:,} loaded)"),
        ("users with valid/test targets", f"{stats['num_eval_users']:,}"),
        ("density", f"{stats['density']:.4%}"),
        ("sequence length min / median / p90 / max",
         f"{lengths['p0']:.0f} / {lengths['p50']:.0f} / {lengths['p90']:.0f} / {lengths['p100']:.0f}"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    return table


@command("download")
def download_command(
    name: Annotated[str, typer.Argument(help="Release: ml-100k, ml-1m, ml-10m, ml-20m, ml-25m, ml-32m, "
                                             "ml-latest, ml-latest-small.")],
    cache_dir: Annotated[Path | None, typer.Option(
        help="Where zips are kept (default: $BERT4REC_CACHE_DIR, else the user cache folder).")] = None,
    force: Annotated[bool, typer.Option(help="Download again even if the zip is cached.")] = False,
) -> None:
    """Download a MovieLens release zip from GroupLens into the cache (checked, then moved into place)."""
    from bert4rec.download import download

    path = download(name, cache_dir, force=force)
    console.print(f"{name}: {path}")


@command("prepare")
def prepare_command(
    data: DataOption,
    out: Annotated[Path, typer.Option(help="Output folder (replaced only once the new one is complete).")],
    min_rating: MinRatingOption = None,
    min_user: MinUserOption = 5,
    min_item: MinItemOption = 5,
    sample_users: SampleUsersOption = None,
    seed: SeedOption = 0,
    user_col: UserColOption = "userId",
    item_col: ItemColOption = "movieId",
    rating_col: RatingColOption = "rating",
    time_col: TimeColOption = "timestamp",
    as_json: Annotated[bool, typer.Option("--json", help="Print stats.json instead of a table.")] = False,
) -> None:
    """Filter a dataset, sort each user's history by time and split it leave-one-out; write parquet + stats."""
    from bert4rec import movielens, preprocess

    columns = movielens.Columns(user_col, item_col, rating_col or None, time_col)
    params = preprocess.PrepareParams(min_rating, min_user, min_item, sample_users, seed)
    dataset = preprocess.prepare(movielens.load(data, columns), params)
    preprocess.save_prepared(dataset, out)
    if as_json:
        sys.stdout.write(json.dumps(dataset.stats, indent=2) + "\n")
    else:
        console.print(_stats_table(dataset.stats))
        console.print(f"written to {out}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
