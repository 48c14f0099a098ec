"""What integrators do through the API, end to end on PostgreSQL: each endpoint's answers and effects."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from django.core.cache import cache as django_cache
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from classifier.models import Listing, ModelEvaluation, ModelVersion, ReviewDecision, ReviewTask, TrainingJob
from knowledge import cache
from knowledge.models import Brand, BrandCategory, Category, ChangeLog
from tests import factories

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


@pytest.fixture(autouse=True)
def _clean(settings):
    factories.review_cache_reset()
    django_cache.delete_many(
        [cache.VERSION_KEY, *(cache.SNAPSHOT_KEY.format(version=n) for n in range(1, 20))]
    )
    cache.memo_clear()


def token_client(user) -> APIClient:
    """A script's client: the user's API token in the Authorization header, no session."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


# ---- review -------------------------------------------------------------------------------------


def test_an_auditor_claims_decides_and_undoes_through_the_api(auditor):
    tshirts = factories.category_path("Apparel", "Topwear", "Tshirts")
    shirts = factories.category_path("Apparel", "Topwear", "Shirts")
    low = factories.review_task(category=tshirts, confidence=0.8)
    high = factories.review_task(category=tshirts, confidence=0.1)
    conflict = factories.review_task(category=tshirts, reason=ReviewTask.Reason.KNOWLEDGE_CONFLICT)
    api = token_client(auditor)

    listed = api.get("/api/review/tasks/", {"status": "pending", "reason": "low_confidence"}).json()
    assert listed["count"] == 2 and {t["id"] for t in listed["results"]} == {low.pk, high.pk}
    assert (
        api.get("/api/review/tasks/", {"reason": "knowledge_conflict"}).json()["results"][0]["id"]
        == conflict.pk
    )
    ReviewTask.objects.filter(pk=conflict.pk).update(route_reason="knowledge_conflict")
    routed = api.get("/api/review/tasks/", {"route_reason": "knowledge_conflict"}).json()
    assert [t["id"] for t in routed["results"]] == [conflict.pk]
    assert routed["results"][0]["route_reason"] == "knowledge_conflict"
    bad = api.get("/api/review/tasks/", {"status": "sleeping"})
    assert bad.status_code == 400 and bad.json()["detail"].startswith("status:")

    # Claim next: the most uncertain item first; asking again returns the one already held.
    claimed = api.post("/api/review/tasks/claim-next/", {"reason": "low_confidence"}, format="json").json()
    assert claimed["id"] == high.pk and claimed["status"] == "claimed" and claimed["claimed_by"] == "audrey"
    assert api.post("/api/review/tasks/claim-next/", {}, format="json").json()["id"] == high.pk
    assert api.get("/api/review/tasks/", {"claimed_by_me": "true"}).json()["count"] == 1

    # A correction to a non-leaf is refused with the reason, and nothing changes.
    url = f"/api/review/tasks/{high.pk}/decide/"
    refused = api.post(
        url,
        {"version": claimed["version"], "action": "correct", "category_id": tshirts.parent_id},
        format="json",
    )
    assert refused.status_code == 409 and "not a leaf" in refused.json()["detail"]
    assert ReviewTask.objects.get(pk=high.pk).status == "claimed"
    # A stale version is a conflict.
    stale = api.post(url, {"version": claimed["version"] - 1, "action": "approve"}, format="json")
    assert stale.status_code == 409 and stale.json()["code"] == "claim_lost"

    done = api.post(
        url, {"version": claimed["version"], "action": "correct", "category_id": shirts.pk}, format="json"
    )
    assert done.status_code == 200, done.content
    body = done.json()
    assert (
        body["decision"]["action"] == "correct"
        and body["decision"]["category"] == "Apparel > Topwear > Shirts"
    )
    assert body["task"]["status"] == "done"
    assert Listing.objects.get(pk=high.listing_id).final_category_id == shirts.pk
    again = api.post(
        url, {"version": claimed["version"], "action": "correct", "category_id": shirts.pk}, format="json"
    )
    assert again.status_code == 409

    undone = api.post("/api/review/undo/")
    assert undone.status_code == 200 and undone.json()["decision"]["action"] == "undo"
    assert undone.json()["task"]["status"] == "claimed"
    assert Listing.objects.get(pk=high.listing_id).final_category_id is None
    assert not ReviewDecision.objects.get(task=high, action="correct").is_training_example


def test_claim_next_on_an_empty_queue_is_204_and_a_missing_task_404(auditor):
    api = token_client(auditor)
    assert api.post("/api/review/tasks/claim-next/", {}, format="json").status_code == 204
    assert (
        api.post(
            "/api/review/tasks/999999/decide/", {"version": 1, "action": "approve"}, format="json"
        ).status_code
        == 404
    )
    assert api.get("/api/review/tasks/999999/").status_code == 404
    nothing = api.post("/api/review/undo/")
    assert nothing.status_code == 409 and "Nothing to undo" in nothing.json()["detail"]


# ---- knowledge ----------------------------------------------------------------------------------


def test_ops_edit_brands_categories_and_relations_then_publish(ops_user):
    tshirts = factories.category_path("Apparel", "Topwear", "Tshirts")
    api = token_client(ops_user)

    created = api.post(
        "/api/knowledge/brands/",
        {
            "name": "Zephyr",
            "aliases": ["ZPH", "西风"],
            "category_ids": [tshirts.pk],
            "reason": "new supplier",
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    zephyr = created.json()
    assert zephyr["aliases"] == ["ZPH", "西风"]
    assert zephyr["categories"] == [{"id": tshirts.pk, "path": "Apparel > Topwear > Tshirts"}]
    assert ChangeLog.objects.filter(
        object_type="brand", object_id=str(zephyr["id"]), status="pending"
    ).exists()

    duplicate = api.post("/api/knowledge/brands/", {"name": "zephyr"}, format="json")
    assert duplicate.status_code == 409 and Brand.objects.filter(name__iexact="zephyr").count() == 1
    assert (
        api.post("/api/knowledge/brands/", {"name": "X", "category_ids": [999999]}, format="json").status_code
        == 409
    )

    found = api.get("/api/knowledge/brands/", {"q": "zph"}).json()  # by alias prefix
    assert found["count"] == 1 and found["results"][0]["name"] == "Zephyr"

    url = f"/api/knowledge/brands/{zephyr['id']}/"
    updated = api.patch(
        url, {"version": zephyr["version"], "aliases": ["ZPH"], "reason": "drop"}, format="json"
    )
    assert updated.status_code == 200 and updated.json()["aliases"] == ["ZPH"]
    assert updated.json()["name"] == "Zephyr"  # fields not sent are kept
    stale = api.patch(url, {"version": zephyr["version"], "name": "Zephyr Two"}, format="json")
    assert stale.status_code == 409 and stale.json()["code"] == "stale"
    assert Brand.objects.get(pk=zephyr["id"]).name == "Zephyr"

    # Categories: create, then rename and move in one call.
    footwear = api.post(
        "/api/knowledge/categories/", {"name": "Footwear", "reason": "new root"}, format="json"
    )
    assert footwear.status_code == 201 and footwear.json()["path"] == "Footwear"
    sandals = api.post(
        "/api/knowledge/categories/", {"name": "Sandal", "parent_id": tshirts.parent_id}, format="json"
    ).json()
    moved = api.patch(
        f"/api/knowledge/categories/{sandals['id']}/",
        {
            "version": sandals["version"],
            "name": "Sandals",
            "parent_id": footwear.json()["id"],
            "reason": "fix",
        },
        format="json",
    )
    assert moved.status_code == 200, moved.content
    assert moved.json()["path"] == "Footwear > Sandals"
    listed = api.get("/api/knowledge/categories/", {"q": "sandal"}).json()
    assert [c["path"] for c in listed["results"]] == ["Footwear > Sandals"]

    # Relations.
    rel = api.post(
        "/api/knowledge/relations/", {"brand_id": zephyr["id"], "category_id": sandals["id"]}, format="json"
    )
    assert rel.status_code == 201 and rel.json()["category"] == "Footwear > Sandals"
    assert (
        api.post(
            "/api/knowledge/relations/",
            {"brand_id": zephyr["id"], "category_id": sandals["id"]},
            format="json",
        ).status_code
        == 200
    )  # already recorded
    rels = api.get("/api/knowledge/relations/", {"brand_id": zephyr["id"]}).json()
    assert rels["count"] == 2
    gone = api.delete(f"/api/knowledge/relations/{zephyr['id']}/{tshirts.pk}/?reason=wrong")
    assert gone.status_code == 204
    assert not BrandCategory.objects.filter(brand_id=zephyr["id"], category=tshirts).exists()
    assert api.delete(f"/api/knowledge/relations/{zephyr['id']}/{tshirts.pk}/").status_code == 404

    # Attribute rules: set (create), set again (replace), update, list, delete.
    rule = api.post(
        "/api/knowledge/rules/",
        {
            "category_id": sandals["id"],
            "name": "Strap",
            "allowed_values": ["buckle", "velcro"],
            "reason": "r",
        },
        format="json",
    )
    assert rule.status_code == 201 and rule.json()["rule"] == "allowed"
    replaced = api.post(
        "/api/knowledge/rules/",
        {"category_id": sandals["id"], "name": "strap", "allowed_values": ["buckle"]},
        format="json",
    )
    assert replaced.status_code == 200 and replaced.json()["id"] == rule.json()["id"]
    required = api.patch(f"/api/knowledge/rules/{rule.json()['id']}/", {"rule": "required"}, format="json")
    assert required.json() == {**replaced.json(), "rule": "required"}
    both = api.post("/api/knowledge/rules/", {"category_id": 999999, "name": "x"}, format="json")
    assert both.status_code == 409 and both.json()["errors"] == {
        "category_id": ["No category with id 999999."]
    }
    assert api.get("/api/knowledge/rules/", {"category_id": sandals["id"]}).json()["count"] == 1
    assert api.delete(f"/api/knowledge/rules/{rule.json()['id']}/").status_code == 204
    assert api.get("/api/knowledge/rules/", {"category_id": sandals["id"]}).json()["count"] == 0

    # Publish, then read the version with its diff counts.
    assert api.post("/api/knowledge/publish/", {}, format="json").status_code == 400  # reason required
    # 400 is a malformed request (the message names the field), 409 a well-formed one refused.
    typed = api.post("/api/knowledge/brands/", {"name": 5}, format="json")
    assert typed.status_code == 400 and typed.json()["detail"] == "name: Not a valid string."
    listed = api.post("/api/knowledge/brands/", {"name": "Y", "category_ids": ["x"]}, format="json")
    assert listed.json()["errors"] == {"category_ids": ["item 0: A valid integer is required."]}
    assert api.get("/api/knowledge/brands/", {"page": ""}).status_code == 400
    published = api.post("/api/knowledge/publish/", {"reason": "Zephyr and sandals"}, format="json")
    assert published.status_code == 201, published.content
    number = published.json()["number"]
    assert published.json()["created_by"] == "otto"
    assert not ChangeLog.objects.filter(status="pending").exists()
    detail = api.get(f"/api/knowledge/versions/{number}/").json()
    assert detail["reason"] == "Zephyr and sandals" and detail["diff"]["brands"]["added"] == 1
    assert api.get("/api/knowledge/versions/").json()["results"][0]["number"] == number
    assert Category.objects.get(pk=sandals["id"]).path_label == "Footwear > Sandals"


# ---- models and training ------------------------------------------------------------------------


def _version(tmp_path: Path, name: str, *, status=ModelVersion.Status.CANDIDATE) -> ModelVersion:
    from classifier.registry.artifacts import file_sha256

    directory = tmp_path / name
    directory.mkdir()
    (directory / "model.safetensors").write_bytes(b"weights " + name.encode())
    return ModelVersion.objects.create(
        name=name,
        artifact_dir=str(directory),
        checksum=file_sha256(directory / "model.safetensors"),
        status=status,
        promoted_at=timezone.now() if status == ModelVersion.Status.PROMOTED else None,
    )


def test_admins_evaluate_promote_and_roll_back_through_the_api(
    admin_user, tmp_path, django_capture_on_commit_callbacks
):
    prod = _version(tmp_path, "v0", status=ModelVersion.Status.PROMOTED)
    candidate = _version(tmp_path, "v1")
    api = token_client(admin_user)

    listed = api.get("/api/models/versions/").json()
    assert [v["name"] for v in listed["results"]] == ["v1", "v0"]
    assert listed["results"][0]["latest_evaluation"] is None

    refused = api.post(f"/api/models/versions/{candidate.pk}/promote/")
    assert refused.status_code == 409 and "not been evaluated" in refused.json()["detail"]
    assert ModelVersion.objects.get(pk=prod.pk).status == "promoted"

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        queued = api.post(f"/api/models/versions/{candidate.pk}/evaluate/")
    assert queued.status_code == 202 and len(callbacks) == 1  # the gate runs on the training queue

    ModelEvaluation.objects.create(
        candidate=candidate,
        baseline=prod,
        eval_set="frozen:test",
        passed=True,
        margin_points=0.5,
        candidate_metrics={"frozen": {"n": 10, "accuracy": {"master": 1.0, "sub": 0.9, "article": 0.8}}},
    )
    evaluation = api.get(f"/api/models/versions/{candidate.pk}/").json()["latest_evaluation"]
    assert evaluation["passed"] and evaluation["baseline"] == "v0"
    assert evaluation["frozen_accuracy"] == {"master": 1.0, "sub": 0.9, "article": 0.8}

    promoted = api.post(f"/api/models/versions/{candidate.pk}/promote/")
    assert promoted.status_code == 200 and promoted.json()["status"] == "promoted"
    rolled = api.post("/api/models/rollback/")
    assert rolled.status_code == 200 and rolled.json()["name"] == "v0"
    assert ModelVersion.objects.get(pk=candidate.pk).status == "retired"
    assert api.post("/api/models/versions/999999/promote/").status_code == 404


def test_admins_start_a_training_job_and_follow_it(admin_user, auditor, tmp_path, settings):
    settings.FINETUNE_MIN_CORRECTIONS = 2
    prod = _version(tmp_path, "v0", status=ModelVersion.Status.PROMOTED)
    api = token_client(admin_user)

    bad = api.post("/api/models/training-jobs/", {"epochs": 99}, format="json")
    assert bad.status_code == 400 and bad.json()["detail"].startswith("epochs:")
    none = api.post("/api/models/training-jobs/", {"base_version_id": 999999}, format="json")
    assert none.status_code == 409 and none.json()["errors"] == {
        "base_version_id": ["No model version 999999."]
    }
    empty = api.post("/api/models/training-jobs/", {"epochs": 1}, format="json")
    assert empty.status_code == 409 and "no approved corrections" in empty.json()["detail"]

    shirts = factories.category_path("Apparel", "Topwear", "Shirts")
    for _ in range(2):
        task = factories.review_task()
        ReviewDecision.objects.create(
            task=task,
            listing=task.listing,
            auditor=auditor,
            action="correct",
            category=shirts,
            is_training_example=True,
        )
    window_start = (timezone.now() - dt.timedelta(hours=1)).isoformat()
    started = api.post(
        "/api/models/training-jobs/", {"epochs": 1, "window_start": window_start}, format="json"
    )
    assert started.status_code == 201, started.content
    job = started.json()
    assert job["status"] == "queued" and job["example_count"] == 2 and job["base_version"] == "v0"
    assert job["requested_by"] == "ada"
    # One job at a time.
    assert api.post("/api/models/training-jobs/", {"epochs": 1}, format="json").status_code == 409

    TrainingJob.objects.filter(pk=job["id"]).update(
        status="running", epoch=1, step=3, total_steps=10, loss=0.5
    )
    status = api.get(f"/api/models/training-jobs/{job['id']}/").json()
    assert (status["status"], status["step"], status["total_steps"], status["loss"]) == (
        "running",
        3,
        10,
        0.5,
    )
    assert api.get("/api/models/training-jobs/").json()["results"][0]["id"] == job["id"]
    assert api.get("/api/models/training-jobs/999999/").status_code == 404
    assert prod.status == "promoted"


def test_the_openapi_schema_documents_the_new_endpoints(admin_user):
    api = token_client(admin_user)
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    ops = {op["operationId"] for item in schema["paths"].values() for op in item.values()}
    assert {
        "review_tasks_claim_next",
        "review_tasks_decide",
        "review_undo_last",
        "knowledge_publish",
        "knowledge_relations_create",
        "models_promote",
        "models_rollback",
        "training_jobs_start",
    } <= ops
    components = schema["components"]["schemas"]
    decide = components.get("DecideInputRequest") or components["DecideInput"]  # COMPONENT_SPLIT_REQUEST
    assert "version" in decide["required"] and "action" in decide["required"]
