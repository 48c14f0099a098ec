"""End to end with a real worker and the trained demo model: API post -> worker -> prediction -> routing."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from classifier.models import AuditEvent, Listing, ModelVersion, Prediction, ReviewTask
from tests.integration.conftest import wait_until
from tests.integration.test_ingest import client_for, post

pytestmark = pytest.mark.integration

SETTLED = (Listing.Status.ACCEPTED, Listing.Status.IN_REVIEW, Listing.Status.FAILED)


def settled(ids: list[int]) -> bool:
    return Listing.objects.filter(pk__in=ids, status__in=SETTLED).count() == len(ids)


def test_posted_listings_are_classified_by_the_worker_and_routed(
    celery_worker_process, seeded_knowledge, demo_model_dir, data_dir, ops_user
):
    import csv

    with open(data_dir / "catalogue.csv", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row["split"] == "test"][:6]
    client = client_for(ops_user)
    ids = []
    for row in rows:
        response = post(
            client, image=(data_dir / row["image"]).read_bytes(), external_id=row["id"], title=row["title"]
        )
        assert response.status_code == 201, response.content
        ids.append(response.json()["id"])

    wait_until(lambda: settled(ids), timeout=240, what="the worker to classify and route every listing")

    version = ModelVersion.objects.get(status=ModelVersion.Status.PROMOTED)
    assert version.checksum and version.artifact_dir.endswith("model")
    for listing in Listing.objects.filter(pk__in=ids):
        assert listing.status in (Listing.Status.ACCEPTED, Listing.Status.IN_REVIEW), listing.failure_reason
        prediction = Prediction.objects.get(listing=listing)
        assert prediction.model_version == version
        assert prediction.category_label == " > ".join(
            [prediction.master_category, prediction.sub_category, prediction.article_type]
        )
        assert prediction.category is not None, "the predicted path exists in the seeded graph"
        assert 0.0 <= prediction.confidence <= 1.0 and prediction.compute_path in {
            "light",
            "full",
            "full+hires",
        }
        assert prediction.knowledge_version == seeded_knowledge.number
        if listing.status == Listing.Status.ACCEPTED:
            assert listing.final_category == prediction.category
            assert not ReviewTask.objects.filter(listing=listing).exists()
            assert AuditEvent.objects.filter(verb="listing.auto_accept", object_id=str(listing.pk)).exists()
        else:
            task = ReviewTask.objects.get(listing=listing)
            assert task.prediction == prediction and task.category == prediction.category
            assert task.reason in {"low_confidence", "knowledge_conflict"} and task.reason_detail
            assert task.priority >= 1.0 - prediction.confidence - 1e-6  # stored to 6 decimals
        if prediction.attention_map:
            with prediction.attention_map.open("rb") as handle, Image.open(handle) as heat:
                ratio = listing.image_width / listing.image_height
                assert heat.format == "PNG" and abs(heat.width / heat.height - ratio) < 0.05

    body = client.get(f"/api/listings/{ids[0]}/").json()
    assert body["prediction"]["model_version"] == version.name
    assert body["prediction"]["article_type"] and len(body["prediction"]["top_k"]["article"]) >= 1
    assert {"master_confidence", "latency_ms", "knowledge_findings", "entities", "attention_map_url"} <= set(
        body["prediction"]
    )


def test_unreadable_image_at_inference_fails_that_listing_only_and_a_redelivery_changes_nothing(
    celery_worker_process, seeded_knowledge, demo_model_dir, make_catalogue_listings
):
    from classifier.listings.tasks import classify_listings

    good, broken = make_catalogue_listings(2)
    # The stored file goes bad after ingestion (disk corruption, a bad restore).
    with broken.image.open("wb") as handle:
        handle.write(b"\xff\xd8\xff\xe0 not a jpeg any more")

    first = classify_listings.delay([good.pk, broken.pk]).get(timeout=240)
    assert first["failed"] == 1 and first["classified"] == 1
    broken.refresh_from_db()
    assert broken.status == Listing.Status.FAILED and "could not be decoded" in broken.failure_reason
    counts = (Prediction.objects.count(), ReviewTask.objects.count(), AuditEvent.objects.count())

    again = classify_listings.delay([good.pk]).get(timeout=120)
    assert again["skipped"] == 1 and again["classified"] == 0
    assert (Prediction.objects.count(), ReviewTask.objects.count(), AuditEvent.objects.count()) == counts


def test_a_new_knowledge_version_reaches_the_worker_without_a_restart(
    celery_worker_process, seeded_knowledge, demo_model_dir, make_catalogue_listings
):
    from classifier.listings.tasks import classify_listings
    from knowledge.versions.publish import knowledge_publish

    (first,) = make_catalogue_listings(1)
    classify_listings.delay([first.pk]).get(timeout=240)
    second = make_catalogue_listings(2)[1]  # created now, so the first batch could not take it along
    assert Prediction.objects.get(listing=first).knowledge_version == seeded_knowledge.number

    newer = knowledge_publish(reason="ops edited the graph")
    pid = celery_worker_process.pid
    classify_listings.delay([second.pk]).get(timeout=120)
    assert Prediction.objects.get(listing=second).knowledge_version == newer.number
    assert celery_worker_process.pid == pid


def test_attention_heatmap_keeps_the_photo_aspect():
    import numpy as np

    from classifier.listings.classification import attention_png

    png = attention_png(np.linspace(0, 1, 49, dtype=np.float32).reshape(7, 7), width=225, height=300)
    with Image.open(io.BytesIO(png)) as heat:
        assert heat.size == (225, 300) and heat.mode == "RGB"
        assert heat.getpixel((0, 0)) != heat.getpixel((224, 299))  # low and high attention differ
    assert attention_png(None, width=10, height=10) is None


def test_a_newly_promoted_model_version_is_loaded_without_a_restart(
    celery_worker_process, seeded_knowledge, demo_model_dir, make_catalogue_listings, tmp_path
):
    import shutil

    from django.db import transaction

    from classifier.listings.tasks import classify_listings
    from classifier.registry.artifacts import file_sha256

    (first,) = make_catalogue_listings(1)
    classify_listings.delay([first.pk]).get(timeout=240)
    bundled = ModelVersion.objects.get(status=ModelVersion.Status.PROMOTED)

    copy = tmp_path / "model-v2"
    shutil.copytree(demo_model_dir, copy)
    with transaction.atomic():
        ModelVersion.objects.filter(pk=bundled.pk).update(status=ModelVersion.Status.RETIRED)
        newer = ModelVersion.objects.create(
            name="model-v2",
            artifact_dir=str(copy),
            checksum=file_sha256(copy / "model.safetensors"),
            status=ModelVersion.Status.PROMOTED,
            parent=bundled,
        )
    pid = celery_worker_process.pid
    second = make_catalogue_listings(2)[1]
    result = classify_listings.delay([second.pk]).get(timeout=240)
    assert result["model_version"] == "model-v2"
    assert Prediction.objects.get(listing=second).model_version == newer
    assert Prediction.objects.get(listing=first).model_version == bundled  # not re-classified
    assert celery_worker_process.pid == pid
