"""schemathesis against the OpenAPI document: generated requests, valid and not, to every operation as an
admin (who may call them all), on a seeded real store. Whatever comes in, the answer is never a 5xx.

Bounded: hypothesis tries at most EXAMPLES cases per operation, without a deadline. Logging out is left
out (it would end the token of the cases after it).
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

EXAMPLES = 30


@pytest.mark.slow  # some 30 to 50 s on 2 cores: 30 cases for each of the 18 operations
def test_no_input_makes_a_server_error(web):
    schema = schemathesis.openapi.from_asgi("/openapi.json", web.app)
    headers = web.headers("ann")
    operations = [result.ok() for result in schema.get_all_operations()]
    operations = [op for op in operations if (op.method.upper(), op.path) != ("DELETE", "/api/v1/token")]
    assert len(operations) >= 15

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def answers_without_a_server_error(case):
            response = case.call(headers=headers)
            assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text[:500]}"

        answers_without_a_server_error()
