"""The whole API matches its OpenAPI schema: schemathesis over EVERY operation, 0 failures (CI;
issue 13, fault 10). The one schemathesis test: listings and token included, nothing run twice.

schemathesis calls every operation the schema documents (listings and token, review, knowledge,
models and training) in-process with generated inputs, as an admin, and checks each answer: no
server error, a documented status and content type, a body valid against the documented schema,
schema-valid input accepted (2xx, or 409 when the graph or the queue refuses it now) and
schema-violating input refused. A few derandomised examples per operation (a fixed seed: the same
cases every run) keep it short and repeatable; run with more by hand:
`API_SCHEMA_EXAMPLES=50 pytest tests/integration/test_api_schema_conformance.py`.
test_every_operation_of_the_schema_is_covered fails when an operation is left out.
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

EXAMPLES = int(os.environ.get("API_SCHEMA_EXAMPLES", "4"))

# Operations whose inputs have a validity OpenAPI cannot express; "schema-valid input is
# accepted" is not checked for them (every other check is):
#   POST /api/listings/   -- the bytes must decode as a JPEG/PNG/WebP photo (format: binary is any bytes)
#   POST /api/auth/token/ -- the credentials must belong to an account (400 otherwise, as DRF answers)
STATE_OR_CONTENT_DEPENDENT = {("POST", "/api/listings/"), ("POST", "/api/auth/token/")}

DOCUMENT = json.loads(json.dumps(SchemaGenerator().get_schema(request=None, public=True), default=str))
schema = schemathesis.openapi.from_dict(DOCUMENT)  # no include(): every operation
schema.app = get_wsgi_application()
HTTP_METHODS = {"get", "put", "post", "patch", "delete", "head", "options", "trace"}


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
def test_api_conforms_to_its_schema(case, admin_token, keep_test_connection):
    excluded = []
    if (case.method.upper(), case.path) in STATE_OR_CONTENT_DEPENDENT:
        excluded.append(positive_data_acceptance)
    case.call_and_validate(headers={"Authorization": f"Token {admin_token}"}, excluded_checks=excluded)


def test_every_operation_of_the_schema_is_covered():
    documented = {
        (method.upper(), path)
        for path, item in DOCUMENT["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }
    tested = {(result.ok().method.upper(), result.ok().path) for result in schema.get_all_operations()}
    assert len(documented) >= 30 and tested == documented, documented ^ tested
