"""The event store on SQLite and on a real PostgreSQL server: the same tests, both backends."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from bert4rec.errors import InvalidRequestError, StoreError, UnknownItemError, UnknownUserError
from bert4rec.store import Event, EventStore, MovieRecord, Written, connect, database_url, migrate
from bert4rec.store.database import check_schema, head_revision
from bert4rec.store.schema import metadata

MOVIES = [MovieRecord(i, f"Movie {i} (199{i % 10})", 1990 + i % 10, "Drama") for i in range(1, 11)]


@pytest.fixture
def store(store_url) -> EventStore:
    migrate(connect(store_url, create=True))
    opened = EventStore.open(store_url)
    opened.add_movies(MOVIES, now=0.0)
    yield opened
    opened.close()


def test_migrations_create_exactly_the_declared_schema(store_url):
    engine = connect(store_url, create=True)
    assert migrate(engine) == (None, head_revision())
    assert migrate(engine) == (head_revision(), head_revision())  # a second init changes nothing
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), metadata) == []


def test_a_store_without_the_schema_is_refused_with_the_fix(store_url):
    with pytest.raises(StoreError, match=r"is empty: run `bert4rec db init"):
        check_schema(connect(store_url, create=True))


def test_histories_are_in_time_order_with_repeats_and_ties_in_arrival_order(store):
    written = store.add_events([Event(7, 3, 4.0, 100), Event(7, 1, None, 50), Event(7, 3, 2.5, 100),
                                Event(7, 2, 5.0, 100), Event(8, 9, 1.0, 10)])
    assert (written.stored, written.duplicates) == (5, 0)
    store.add_events([Event(7, 4, 3.0, 100)])  # same second as three others: after them, it arrived last
    history = store.histories([7, 8, 99], limit=100)
    assert set(history) == {7, 8}  # no events, no history
    np.testing.assert_array_equal(history[7].movie_ids, [1, 3, 3, 2, 4])
    np.testing.assert_array_equal(history[7].ratings, [np.nan, 4.0, 2.5, 5.0, 3.0])
    np.testing.assert_array_equal(history[7].timestamps, [50, 100, 100, 100, 100])
    np.testing.assert_array_equal(store.histories([7], limit=2)[7].movie_ids, [2, 4])  # the newest two, in order
    store.add_events([Event(8, 5, None, 20), Event(8, 6, None, 5)])
    several = store.histories([8, 7, 8], limit=2)  # the limit is each user's, whoever else is read with them
    np.testing.assert_array_equal(several[7].movie_ids, [2, 4])
    np.testing.assert_array_equal(several[8].movie_ids, [9, 5])
    np.testing.assert_array_equal(several[8].timestamps, [10, 20])
    assert store.histories([7], limit=0) == {}


def test_event_ids_make_retries_duplicates_within_and_across_batches(store):
    first = store.add_events([Event(1, 1, event_id="a"), Event(1, 2, event_id="b"), Event(1, 2, event_id="b"),
                              Event(2, 1, event_id="a"), Event(1, 3)])
    assert (first.stored, first.duplicates) == (4, 1)  # "b" twice; user 2's "a" is another user's key
    again = store.add_events([Event(1, 1, event_id="a"), Event(1, 5, event_id="c"), Event(1, 3)])
    assert (again.stored, again.duplicates) == (2, 1)  # events without an id are never duplicates
    assert sorted(store.histories([1], 10)[1].movie_ids) == [1, 2, 3, 3, 5]


def test_event_ids_with_the_characters_of_array_and_sql_syntax_come_back_as_sent(store):
    # PostgreSQL receives a batch as arrays: what array literals and SQL give meaning to must stay plain text.
    keys = ["NULL", "null", '{a,b}', '"quoted"', "back\\slash", "it's", "a, b", "  spaced  ", "ünï ✓", "}{"]
    written = store.add_events([Event(4, 1, rating=None if i % 2 else 3.5, event_id=k) for i, k in enumerate(keys)])
    assert (written.stored, written.duplicates) == (len(keys), 0)
    assert [e["eventId"] for e in store.user_events(4, 100)][::-1] == keys  # oldest first: as sent
    assert [e["rating"] for e in store.user_events(4, 100)][::-1] == [None if i % 2 else 3.5 for i in range(10)]
    again = store.add_events([Event(4, 2, event_id=k) for k in keys])
    assert (again.stored, again.duplicates) == (0, len(keys))


def test_an_unknown_movie_is_named_and_nothing_of_the_batch_is_stored(store):
    with pytest.raises(UnknownItemError, match=r"unknown movie ids 11, 12 \(add it with POST /movies"):
        store.add_events([Event(5, 1), Event(5, 12), Event(6, 11)])
    assert store.counts() == {"users": 0, "movies": 10, "events": 0}
    assert store.add_movies([MovieRecord(11, "New (2026)", 2026, "Comedy"), MOVIES[0]]) == 1
    assert store.add_events([Event(6, 11)]).stored == 1


def test_batches_written_together_each_stand_alone(store):
    results = store.add_event_batches([
        [Event(1, 1, event_id="a"), Event(1, 2)],
        [Event(2, 1), Event(2, 99)],  # unknown movie: this batch alone fails
        [Event(3, 1, float("nan"))],  # invalid: this batch alone fails
        [Event(1, 3, event_id="a"), Event(4, 4, event_id="a")],  # user 1's "a" came first in the first batch
        [],
    ])
    assert results[0] == Written(2, 0) and results[3] == Written(1, 1) and results[4] == Written(0, 0)
    assert isinstance(results[1], UnknownItemError) and "99" in str(results[1])
    assert isinstance(results[2], InvalidRequestError)
    assert store.counts() == {"users": 2, "movies": 10, "events": 3}
    np.testing.assert_array_equal(store.histories([1], 10)[1].movie_ids, [1, 2])


@pytest.mark.parametrize("bad", [Event(1, 1, float("nan")), Event(1, 1, float("inf")), Event(1, 1, event_id=""),
                                 Event(1, 1, event_id="x" * 201)])
def test_bad_events_are_refused_whole(store, bad):
    with pytest.raises(InvalidRequestError, match=r"event 1: "):
        store.add_events([Event(1, 2), bad])
    assert store.counts()["events"] == 0


def test_a_missing_timestamp_is_the_time_received(store):
    store.add_events([Event(1, 1)], now=1234.9)
    assert store.user_events(1) == [{"movieId": 1, "rating": None, "timestamp": 1234, "receivedAt": 1234.9,
                                     "eventId": None}]


def test_user_events_are_newest_first_and_limited(store):
    store.add_events([Event(1, m, float(m % 5), 10 * m, f"e{m}") for m in (1, 2, 3)], now=99.0)
    listed = store.user_events(1, limit=2)
    assert [e["movieId"] for e in listed] == [3, 2] and listed[0]["eventId"] == "e3"
    with pytest.raises(UnknownUserError, match="unknown user id 2"):
        store.user_events(2)


def test_erasing_a_user_removes_them_and_every_event(store):
    store.add_events([Event(1, 1), Event(1, 2), Event(2, 3)])
    assert store.delete_user(1) == 2
    assert store.counts() == {"users": 1, "movies": 10, "events": 1}
    assert store.histories([1, 2], 10).keys() == {2}
    with pytest.raises(UnknownUserError):
        store.delete_user(1)


def _write_events(url: str, writer: int, batches: int) -> None:
    store = EventStore.open(url)
    for batch in range(batches):
        store.add_events([Event(writer, 1 + (batch + i) % 10, 3.0, batch, f"{batch}-{i}") for i in range(20)])
    store.close()


def test_eight_writer_processes_at_once_all_succeed(store, store_url):
    # SQLite has one writer at a time: the others must wait their turn, never fail with "database is locked".
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_events, args=(store_url, w, 25)) for w in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [w.exitcode for w in workers] == [0] * 8
    assert store.counts()["events"] == 8 * 25 * 20


@pytest.mark.parametrize(("spec", "message"), [
    ("mysql://u@h/db", "mysql: unsupported database"),
    ("sqlite://", "in-memory SQLite database keeps nothing"),
    ("not a url://", "is not a database URL"),
    ("", "no database given: pass --db"),
])
def test_bad_database_names_are_one_line_errors(spec, message):
    with pytest.raises(StoreError, match=message):
        database_url(spec)


def test_a_missing_sqlite_file_is_not_created_by_opening_it(tmp_path):
    with pytest.raises(StoreError, match=r"no such database.*bert4rec db init"):
        EventStore.open(tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()


def test_an_unreachable_server_is_one_line_naming_it(tmp_path):
    with pytest.raises(StoreError, match=r"^postgresql\+psycopg://nobody@/x\?host=.*: .*") as error:
        EventStore.open(f"postgresql://nobody@/x?host={tmp_path}")
    assert "\n" not in str(error.value)


def test_postgres_urls_use_psycopg_3():
    assert database_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert database_url("events.db").database.endswith("/events.db")
