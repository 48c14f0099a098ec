"""Serving when a model cannot be loaded, with a real worker and the trained demo model.

- A promoted artifact that fails to load: the worker keeps serving the version it has, the failure
  is in the audit trail (admin > Audit events), and every listing still gets its prediction.
- The engine-wide fallback: when no model at all can be loaded (a fresh worker, the promoted artifact
  missing), the batch fails as a whole, the listings stay `queued` with no prediction (the sweeper
  sends them again) and nothing is lost: once a loadable model serves, the same listings classify.
"""

from __future__ import annotations

import shutil

import pytest
from celery.exceptions import TimeoutError as CeleryTimeout
from django.db import transaction

from classifier.models import AuditEvent, Listing, ModelVersion, Prediction

pytestmark = pytest.mark.integration


def _promote(name: str, artifact_dir: str, *, parent: ModelVersion | None = None) -> ModelVersion:
    with transaction.atomic():
        ModelVersion.objects.filter(status=ModelVersion.Status.PROMOTED).update(
            status=ModelVersion.Status.RETIRED
        )
        return ModelVersion.objects.create(
            name=name,
            artifact_dir=artifact_dir,
            checksum="f" * 64,
            status=ModelVersion.Status.PROMOTED,
            parent=parent,
        )


def test_a_promoted_artifact_that_fails_to_load_keeps_the_previous_version_serving(
    celery_worker_process, seeded_knowledge, demo_model_dir, make_catalogue_listings, tmp_path
):
    from classifier.listings.tasks import classify_listings

    # Listings are created after each batch: a batch also takes queued listings it has room for.
    (first,) = make_catalogue_listings(1)
    classify_listings.delay([first.pk]).get(timeout=240)
    bundled = ModelVersion.objects.get(status=ModelVersion.Status.PROMOTED)

    broken_dir = tmp_path / "model-broken"
    shutil.copytree(demo_model_dir, broken_dir)
    (broken_dir / "model.safetensors").write_bytes(b"not a safetensors file" * 100)
    broken = _promote("model-broken", str(broken_dir), parent=bundled)
    pid = celery_worker_process.pid
    second, third = make_catalogue_listings(3)[1:]

    result = classify_listings.delay([second.pk, third.pk]).get(timeout=240)

    assert result["model_version"] == bundled.name
    assert sorted(result["ids"]) == sorted([second.pk, third.pk])
    for listing in (second, third):
        prediction = Prediction.objects.get(listing=listing)  # exactly one each: nothing lost
        assert prediction.model_version == bundled
        listing.refresh_from_db()
        assert listing.status in (Listing.Status.ACCEPTED, Listing.Status.IN_REVIEW)
    assert celery_worker_process.pid == pid  # no crash, no restart
    events = AuditEvent.objects.filter(verb="model.load_failed", object_id=str(broken.pk))
    assert events.count() == 1
    assert events.get().data["kept_serving"] == bundled.name
    assert events.get().data["error"]
    # The broken version is still the promoted one (an admin rolls back); serving did not stop.
    broken.refresh_from_db()
    assert broken.status == ModelVersion.Status.PROMOTED

    # A later batch keeps serving the bundled model and does not repeat the audit entry.
    (fourth,) = make_catalogue_listings(4)[3:]
    again = classify_listings.delay([fourth.pk]).get(timeout=240)
    assert again["model_version"] == bundled.name
    assert AuditEvent.objects.filter(verb="model.load_failed", object_id=str(broken.pk)).count() == 1


def test_when_no_model_can_be_loaded_the_listings_stay_queued_and_classify_later(
    celery_worker_process, seeded_knowledge, demo_model_dir, make_catalogue_listings, tmp_path
):
    from classifier.listings.tasks import classify_listings

    listings = make_catalogue_listings(2)
    ids = [listing.pk for listing in listings]
    missing = _promote("model-missing", str(tmp_path / "nowhere"))

    with pytest.raises(Exception) as failure:  # the worker's exception, re-raised by .get()
        classify_listings.delay(ids).get(timeout=240)
    assert not isinstance(failure.value, CeleryTimeout)
    assert "model.safetensors is missing" in str(failure.value)

    assert not Prediction.objects.filter(listing_id__in=ids).exists()
    assert set(Listing.objects.filter(pk__in=ids).values_list("status", flat=True)) == {Listing.Status.QUEUED}
    event = AuditEvent.objects.get(verb="model.load_failed", object_id=str(missing.pk))
    assert event.data["kept_serving"] is None

    # An admin retires the broken version: the bundled model serves, the same listings classify.
    ModelVersion.objects.filter(pk=missing.pk).update(status=ModelVersion.Status.RETIRED)
    result = classify_listings.delay(ids).get(timeout=240)
    assert sorted(result["ids"]) == sorted(ids)
    assert Prediction.objects.filter(listing_id__in=ids).count() == 2
    assert not Listing.objects.filter(pk__in=ids, status=Listing.Status.QUEUED).exists()
