"""The integrator API (review, knowledge, models, training) matches its OpenAPI schema.

schemathesis calls every operation under /api/review/, /api/knowledge/ and /api/models/ in-process
with generated inputs, as an admin, and checks each answer: no server error, a documented status
and content type, a body valid against the documented schema, schema-valid input accepted (2xx,
or 409 when the graph or the queue refuses it now) and schema-violating input refused. A few
derandomised examples per operation keep it short and repeatable; run with more by hand:
`API_SCHEMA_EXAMPLES=50 pytest tests/integration/test_api_schema_conformance.py`.
"""

from __future__ import annotations

import json
import os

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("API_SCHEMA_EXAMPLES", "4"))

schema = schemathesis.openapi.from_dict(
    json.loads(json.dumps(SchemaGenerator().get_schema(request=None, public=True), default=str))
).include(path_regex=r"^/api/(review|knowledge|models)/")
schema.app = get_wsgi_application()


@pytest.fixture
def keep_test_connection():
    """As Django's test client does: a request must not close the test's (transaction-wrapped) connection."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def admin_token(admin_user) -> str:
    from rest_framework.authtoken.models import Token

    return Token.objects.get_or_create(user=admin_user)[0].key


@pytest.mark.django_db
@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_integrator_api_conforms_to_its_schema(case, admin_token, keep_test_connection):
    case.call_and_validate(headers={"Authorization": f"Token {admin_token}"})
