"""Every integrator endpoint, every role: who is let in, who is refused (a parametrised matrix).

Allowed roles must get past the permission check (whatever the endpoint then answers for the
fixture data); the others get 403, and a request without credentials gets 401.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from rest_framework.test import APIClient

from classifier.models import ModelVersion, TrainingJob
from knowledge.models import BrandCategory, CategoryAttribute
from tests import factories
from tests.conftest import make_user

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

ALL = ("auditor", "ops", "admin")
KNOWLEDGE_EDITORS = ("ops", "admin")
ADMINS = ("admin",)


@dataclass(frozen=True)
class Endpoint:
    method: str
    url: Callable[[dict[str, Any]], str]
    allowed: tuple[str, ...]
    body: Callable[[dict[str, Any]], dict[str, Any]] = lambda objs: {}

    def __str__(self) -> str:  # shows in the test id
        return self.method


def _objects() -> dict[str, Any]:
    tshirts = factories.category_path("Apparel", "Topwear", "Tshirts")
    puma = factories.brand("Puma", sells=tshirts)
    task = factories.review_task(category=tshirts)
    version = ModelVersion.objects.get(name="test-v1")
    job = TrainingJob.objects.create(
        base_version=version, data_window_end=version.created_at, status=TrainingJob.Status.SUCCEEDED
    )
    rule = CategoryAttribute.objects.create(category=tshirts, name="fabric", allowed_values=["cotton"])
    return {"tshirts": tshirts, "puma": puma, "task": task, "version": version, "job": job, "rule": rule}


ENDPOINTS: dict[str, Endpoint] = {
    # review
    "review tasks list": Endpoint("get", lambda o: "/api/review/tasks/?status=pending", ALL),
    "review task": Endpoint("get", lambda o: f"/api/review/tasks/{o['task'].pk}/", ALL),
    "review claim next": Endpoint("post", lambda o: "/api/review/tasks/claim-next/", ALL),
    "review decide": Endpoint(
        "post",
        lambda o: f"/api/review/tasks/{o['task'].pk}/decide/",
        ALL,
        lambda o: {"version": o["task"].version, "action": "approve"},
    ),
    "review undo": Endpoint("post", lambda o: "/api/review/undo/", ALL),
    # knowledge
    "brands list": Endpoint("get", lambda o: "/api/knowledge/brands/?q=pu", ALL),
    "brand": Endpoint("get", lambda o: f"/api/knowledge/brands/{o['puma'].pk}/", ALL),
    "brand create": Endpoint(
        "post", lambda o: "/api/knowledge/brands/", KNOWLEDGE_EDITORS, lambda o: {"name": "Nike"}
    ),
    "brand update": Endpoint(
        "patch",
        lambda o: f"/api/knowledge/brands/{o['puma'].pk}/",
        KNOWLEDGE_EDITORS,
        lambda o: {"version": o["puma"].version, "aliases": ["PUMA SE"]},
    ),
    "categories list": Endpoint("get", lambda o: "/api/knowledge/categories/?q=shirt", ALL),
    "category": Endpoint("get", lambda o: f"/api/knowledge/categories/{o['tshirts'].pk}/", ALL),
    "category create": Endpoint(
        "post", lambda o: "/api/knowledge/categories/", KNOWLEDGE_EDITORS, lambda o: {"name": "Footwear"}
    ),
    "category update": Endpoint(
        "patch",
        lambda o: f"/api/knowledge/categories/{o['tshirts'].pk}/",
        KNOWLEDGE_EDITORS,
        lambda o: {"version": o["tshirts"].version, "aliases": ["Tees"]},
    ),
    "relations list": Endpoint("get", lambda o: f"/api/knowledge/relations/?brand_id={o['puma'].pk}", ALL),
    "relation create": Endpoint(
        "post",
        lambda o: "/api/knowledge/relations/",
        KNOWLEDGE_EDITORS,
        lambda o: {"brand_id": o["puma"].pk, "category_id": o["tshirts"].parent_id},
    ),
    "relation delete": Endpoint(
        "delete", lambda o: f"/api/knowledge/relations/{o['puma'].pk}/{o['tshirts'].pk}/", KNOWLEDGE_EDITORS
    ),
    "rules list": Endpoint("get", lambda o: f"/api/knowledge/rules/?category_id={o['tshirts'].pk}", ALL),
    "rule set": Endpoint(
        "post",
        lambda o: "/api/knowledge/rules/",
        KNOWLEDGE_EDITORS,
        lambda o: {"category_id": o["tshirts"].pk, "name": "sleeve", "allowed_values": ["short"]},
    ),
    "rule update": Endpoint(
        "patch",
        lambda o: f"/api/knowledge/rules/{o['rule'].pk}/",
        KNOWLEDGE_EDITORS,
        lambda o: {"rule": "required"},
    ),
    "rule delete": Endpoint("delete", lambda o: f"/api/knowledge/rules/{o['rule'].pk}/", KNOWLEDGE_EDITORS),
    "publish": Endpoint(
        "post", lambda o: "/api/knowledge/publish/", KNOWLEDGE_EDITORS, lambda o: {"reason": "r"}
    ),
    "versions list": Endpoint("get", lambda o: "/api/knowledge/versions/", ALL),
    "version": Endpoint("get", lambda o: "/api/knowledge/versions/1/", ALL),
    # models and training
    "model versions list": Endpoint("get", lambda o: "/api/models/versions/", ADMINS),
    "model version": Endpoint("get", lambda o: f"/api/models/versions/{o['version'].pk}/", ADMINS),
    "model evaluate": Endpoint("post", lambda o: f"/api/models/versions/{o['version'].pk}/evaluate/", ADMINS),
    "model promote": Endpoint("post", lambda o: f"/api/models/versions/{o['version'].pk}/promote/", ADMINS),
    "model rollback": Endpoint("post", lambda o: "/api/models/rollback/", ADMINS),
    "training jobs list": Endpoint("get", lambda o: "/api/models/training-jobs/", ADMINS),
    "training job": Endpoint("get", lambda o: f"/api/models/training-jobs/{o['job'].pk}/", ADMINS),
    "training start": Endpoint(
        "post", lambda o: "/api/models/training-jobs/", ADMINS, lambda o: {"base_version_id": o["version"].pk}
    ),
}


def test_the_matrix_covers_every_operation_in_the_openapi_schema():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    operations = {
        (method, path)
        for path, item in schema["paths"].items()
        for method, op in item.items()
        if op["operationId"].startswith(("review_", "knowledge_", "models_", "training_"))
    }
    assert len(operations) == len(ENDPOINTS) == 31, sorted(operations)


@pytest.mark.parametrize("role", [*ALL, "nobody", "anonymous"])
@pytest.mark.parametrize("name", list(ENDPOINTS))
def test_role_matrix(name: str, role: str):
    endpoint = ENDPOINTS[name]
    objs = _objects()
    client = APIClient()
    if role != "anonymous":
        user = make_user(f"user-{role}", None if role == "nobody" else role)
        client.force_authenticate(user)
    response = getattr(client, endpoint.method)(endpoint.url(objs), endpoint.body(objs), format="json")
    if role == "anonymous":
        assert response.status_code == 401, response.content
    elif role in endpoint.allowed:
        assert response.status_code not in (401, 403), (response.status_code, response.content)
        assert response.status_code < 500
    else:
        assert response.status_code == 403, (response.status_code, response.content)
        assert "permission" in response.json()["detail"]
        # Refused means unchanged.
        assert BrandCategory.objects.filter(brand=objs["puma"], category=objs["tshirts"]).exists()
        assert not ModelVersion.objects.filter(status=ModelVersion.Status.PROMOTED).exists()
        assert CategoryAttribute.objects.filter(pk=objs["rule"].pk, required=False).exists()
