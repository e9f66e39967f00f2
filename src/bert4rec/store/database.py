"""Where the event store lives: a database named by a URL, the engine that talks to it, and its migrations.

``events.db`` or ``sqlite:///events.db`` is an embedded SQLite file (WAL, so readers never wait for the writer; a
busy timeout, so writers queue instead of failing); ``postgresql://user@host/db`` is a PostgreSQL server reached
through psycopg 3. ``BERT4REC_DB`` names the default.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, InterfaceError, NoSuchModuleError, OperationalError

from bert4rec.errors import StoreError

DB_ENV = "BERT4REC_DB"
BUSY_TIMEOUT_S = 10.0  # how long a SQLite writer waits for another to finish before the write fails
WRITE_OPTION = "bert4rec_write"  # execution option: this transaction writes (SQLite takes the write lock at BEGIN)
BACKENDS = ("sqlite", "postgresql")


def database_url(spec: str | os.PathLike | None = None) -> URL:
    """The URL a ``--db`` value names: a file path (SQLite) or a database URL; ``$BERT4REC_DB`` when None."""
    spec = str(spec) if spec is not None else os.environ.get(DB_ENV, "")
    if not spec.strip():
        raise StoreError(f"no database given: pass --db (a file such as events.db, or a URL) or set {DB_ENV}")
    if "://" not in spec:
        return URL.create("sqlite", database=str(Path(spec).expanduser().absolute()))
    try:
        url = make_url(spec)
    except ArgumentError:
        raise StoreError(f"{spec!r} is not a database URL (expected sqlite:///FILE or "
                         "postgresql://USER@HOST/DB)") from None
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() not in BACKENDS:
        raise StoreError(f"{url.get_backend_name()}: unsupported database (use SQLite or PostgreSQL)")
    if url.get_backend_name() == "sqlite" and not url.database:
        raise StoreError("an in-memory SQLite database keeps nothing: name a file, e.g. sqlite:///events.db")
    return url


def describe(url: URL) -> str:
    """The URL as it may be printed: without its password."""
    return url.render_as_string(hide_password=True)


def connect(spec: str | os.PathLike | URL | None = None, create: bool = False) -> Engine:
    """An engine for the database ``spec`` names. A SQLite file must exist unless ``create``."""
    url = spec if isinstance(spec, URL) else database_url(spec)
    if url.get_backend_name() == "sqlite":
        path = Path(url.database)
        if not create and not path.is_file():
            raise StoreError(f"{path}: no such database (create it with `bert4rec db init --db {path}`)")
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False})
        _configure_sqlite(engine)
        return engine
    try:
        return create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=8)
    except NoSuchModuleError as exc:
        raise StoreError(f"{describe(url)}: {exc}") from None
    except ModuleNotFoundError:
        raise StoreError("PostgreSQL needs psycopg 3: pip install 'bert4rec[postgres]'") from None


def _configure_sqlite(engine: Engine) -> None:
    # pysqlite's own transaction handling starts transactions late and never as writers; take it over, so that a
    # write transaction holds the write lock from its first statement and waits (busy timeout) instead of failing
    # when two writers meet halfway.
    @event.listens_for(engine, "connect")
    def on_connect(connection, record) -> None:
        connection.isolation_level = None
        for pragma in ("journal_mode=WAL", f"busy_timeout={int(BUSY_TIMEOUT_S * 1000)}", "foreign_keys=ON",
                       "synchronous=FULL"):
            connection.execute(f"PRAGMA {pragma}")

    @event.listens_for(engine, "begin")
    def on_begin(connection) -> None:
        immediate = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


# ---------------------------------------------------------------------------------------------- migrations


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files("bert4rec.store") / "migrations"))
    return config


def head_revision() -> str:
    """The schema version this bert4rec writes and reads."""
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The schema version the database is at; None for an empty database."""
    with unavailable_as_store_error(engine), engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def migrate(engine: Engine) -> tuple[str | None, str]:
    """Create the schema, or bring it up to this version's, in one transaction. Returns (before, after)."""
    config = _alembic_config()
    with unavailable_as_store_error(engine), engine.begin() as connection:
        before = MigrationContext.configure(connection).get_current_revision()
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    return before, head_revision()


def check_schema(engine: Engine) -> None:
    """Raise StoreError unless the database holds this version's schema."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        state = "is empty" if current is None else f"is at schema {current}, this bert4rec needs {head}"
        raise StoreError(f"{describe(engine.url)} {state}: run `bert4rec db init --db ...`")


@contextlib.contextmanager
def unavailable_as_store_error(engine: Engine) -> Iterator[None]:
    """Turn a database that cannot be reached, or that refuses us, into one StoreError line naming it."""
    try:
        yield
    except (OperationalError, InterfaceError) as exc:
        reason = str(exc.orig if exc.orig is not None else exc).strip().splitlines()
        raise StoreError(f"{describe(engine.url)}: {reason[0] if reason else type(exc).__name__}") from None
