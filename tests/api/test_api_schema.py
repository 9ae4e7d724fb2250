"""Schemathesis over the whole OpenAPI schema: no server errors, no schema violations (bounded run)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from catalog.settings import Settings

MAX_EXAMPLES = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.mark.services
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors_and_no_schema_violations(
    settings: Settings, make_key: Callable[..., str], mode: GenerationMode
) -> None:
    app = create_app(settings.model_copy(update={"rate_limit_submissions": 100_000}))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    authorization = {"Authorization": f"Bearer {make_key('submit')}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 11

    for operation in operations:
        _fuzz(operation, mode, authorization if operation.method.upper() == "POST" else None)


def _fuzz(operation: APIOperation, mode: GenerationMode, headers: dict[str, str] | None) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis_settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    try:
        check()
    except Unsatisfiable:
        # Negative mode on an operation without parameters or body: there is nothing invalid to send.
        assert mode == GenerationMode.NEGATIVE, operation.label
