"""Property-based fuzzing of the REST API from its own OpenAPI schema: no 5xx, responses match the schema."""

from __future__ import annotations

import schemathesis
from conftest import shared
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from bert4rec.data import movielens
from bert4rec.serving.access import Keys
from bert4rec.serving.app import create_app
from bert4rec.serving.recommender import Recommender
from bert4rec.store import EventStore, connect, import_dataset, migrate

CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]


BASE = {"GET /movies", "GET /movies/{movieId}", "POST /recommendations", "GET /users/{userId}/recommendations",
        "GET /health", "GET /health/live", "GET /health/ready", "GET /metrics", "POST /admin/reload"}
LIVE = {"POST /events", "GET /users/{userId}/events", "DELETE /users/{userId}", "POST /movies"}


def fuzz_every_operation(app) -> set[str]:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    checked = set()
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def fuzz(case):
            # Random movie ids and titles are mostly unknown, so a 4xx for schema-valid data is expected here.
            case.call_and_validate(checks=CHECKS)

        fuzz()
        checked.add(operation.label)
    return checked


def test_api_never_fails_and_matches_its_schema(untrained_model_dir):
    assert fuzz_every_operation(create_app(Recommender.load(untrained_model_dir))) == BASE


def test_api_with_a_store_never_fails_and_matches_its_schema(untrained_model_dir, tmp_path):
    # Writes open, so that fuzzed events, movies and erasures reach the store rather than stopping at the key check.
    db = tmp_path / "events.db"
    migrate(connect(db, create=True))
    store = EventStore.open(db)
    import_dataset(store, movielens.load(shared("ml-latest-small")), progress=False)
    app = create_app(Recommender.load(untrained_model_dir), store=store, keys=Keys(open_writes=True))
    assert fuzz_every_operation(app) == BASE | LIVE
