"""Property-based fuzzing of the REST API from its own OpenAPI schema: no 5xx, responses match the schema."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from bert4rec.serving.app import create_app
from bert4rec.serving.recommender import Recommender

CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]


def test_api_never_fails_and_matches_its_schema(untrained_model_dir):
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(Recommender.load(untrained_model_dir)))
    checked = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def fuzz(case):
            # Random movie ids and titles are mostly unknown, so a 4xx for schema-valid data is expected here.
            case.call_and_validate(checks=CHECKS)

        fuzz()
        checked.append(operation.label)
    assert len(checked) == 5, checked
