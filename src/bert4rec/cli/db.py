"""The event store's commands: ``bert4rec db init | import | export | stats``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from bert4rec.cli.data import DataOption, ItemColOption, RatingColOption, TimeColOption, UserColOption
from bert4rec.cli.main import QuietOption, app, command, console
from bert4rec.data.settings import Columns

db_app = typer.Typer(help="The event store (SQLite or PostgreSQL): create it, import a dataset, export it for "
                          "training.", no_args_is_help=True)
app.add_typer(db_app, name="db")

DbOption = Annotated[str | None, typer.Option(
    "--db", envvar="BERT4REC_DB", show_envvar=True,
    help="The store: a SQLite file (events.db, sqlite:///events.db) or a PostgreSQL URL "
         "(postgresql://user:password@host/db).")]


@command("init", group=db_app)
def init_command(db: DbOption = None) -> None:
    """Create the store's tables, or bring an older store up to this version's schema (in one transaction)."""
    from bert4rec.store import connect, migrate
    from bert4rec.store.database import describe

    engine = connect(db, create=True)
    before, after = migrate(engine)
    state = (f"schema {after} created" if before is None else f"already at schema {after}" if before == after
             else f"migrated from schema {before} to {after}")
    console.print(f"{describe(engine.url)}: {state}")


@command("import", group=db_app)
def import_command(
    data: DataOption,
    db: DbOption = None,
    user_col: UserColOption = Columns.user,
    item_col: ItemColOption = Columns.item,
    rating_col: RatingColOption = Columns.rating,
    time_col: TimeColOption = Columns.timestamp,
    append: Annotated[bool, typer.Option(
        help="Add to a store that already holds events (otherwise refused: importing twice doubles histories).")]
    = False,
    quiet: QuietOption = False,
) -> None:
    """Load a dataset's movies, users and ratings into the store, all or nothing (PostgreSQL through COPY)."""
    from bert4rec.data import movielens
    from bert4rec.store import EventStore, import_dataset

    store = EventStore.open(db)
    started = time.perf_counter()
    raw = movielens.load(data, Columns(user_col, item_col, rating_col or None, time_col))
    done = import_dataset(store, raw, append=append, progress=not quiet)
    console.print(f"{store.name}: {done.events:,} events imported from {raw.source} ({done.users:,} new users, "
                  f"{done.movies:,} new movies) in {time.perf_counter() - started:.1f} s")


@command("export", group=db_app)
def export_command(
    out: Annotated[Path, typer.Option(help="Folder for ratings.parquet and movies.parquet (replaced only once "
                                           "both are complete); `bert4rec prepare --data` and `train` read it.")],
    db: DbOption = None,
    quiet: QuietOption = False,
) -> None:
    """Write every stored event as ratings.parquet (userId, movieId, rating, timestamp) and the movies beside it;
    erased users are gone from it."""
    from bert4rec.store import EventStore, export_dataset

    store = EventStore.open(db)
    done = export_dataset(store, out, progress=not quiet)
    console.print(f"{store.name}: {done.events:,} events of {done.users:,} users and {done.movies:,} movies "
                  f"written to {out}")


@command("stats", group=db_app)
def stats_command(db: DbOption = None) -> None:
    """How many users, movies and events the store holds."""
    from bert4rec.store import EventStore

    store = EventStore.open(db)
    counts = store.counts()
    console.print(f"{store.name}: " + ", ".join(f"{n:,} {name}" for name, n in counts.items()))
