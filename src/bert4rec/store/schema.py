"""The event store's tables (SQLAlchemy Core), one schema for SQLite and PostgreSQL.

Events are append-only: a user's history is their events in time order, repeats included, ties in time broken by
arrival (the auto-increment id), the same stable order ``prepare`` gives a ratings file. The migrations in
``migrations/versions`` create exactly these tables; a test checks that the two agree.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

# SQLite only auto-increments an INTEGER PRIMARY KEY (its 64-bit rowid); PostgreSQL gets a BIGINT identity.
EVENT_ID_TYPE = BigInteger().with_variant(Integer(), "sqlite")
MAX_EVENT_ID_LENGTH = 200  # a client's idempotency key

metadata = MetaData()

users = Table(
    "users", metadata,
    Column("user_id", BigInteger, primary_key=True, autoincrement=False),
    Column("created_at", Float, nullable=False),  # Unix seconds, when the store first saw the user
)

movies = Table(
    "movies", metadata,
    Column("movie_id", BigInteger, primary_key=True, autoincrement=False),
    Column("title", Text, nullable=False),
    Column("year", Integer),
    Column("genres", Text, nullable=False),  # "|"-separated, as in MovieLens
    Column("added_at", Float, nullable=False),  # Unix seconds
)

events = Table(
    "events", metadata,
    Column("id", EVENT_ID_TYPE, primary_key=True, autoincrement=True),
    Column("user_id", BigInteger, ForeignKey("users.user_id", ondelete="CASCADE"), nullable=False),
    Column("movie_id", BigInteger, ForeignKey("movies.movie_id"), nullable=False),
    Column("rating", Float),  # None: watched, not rated
    Column("timestamp", BigInteger, nullable=False),  # when it happened, Unix seconds (the time received if not given)
    Column("received_at", Float, nullable=False),  # when the store acknowledged it, Unix seconds
    Column("event_id", String(MAX_EVENT_ID_LENGTH)),  # the client's key: a second event with it is a duplicate
    UniqueConstraint("user_id", "event_id", name="uq_events_user_event_id"),
    # "this user's last N events" and "this user's history in order" read this index alone.
    Index("ix_events_user_time", "user_id", "timestamp", "id"),
)
