"""The real worker: it starts, runs tasks from the broker, and loses nothing when killed mid-batch."""

from __future__ import annotations

import time

import pytest

from classifier.models import Listing, Prediction
from tests.integration.conftest import wait_until

pytestmark = pytest.mark.integration


def test_worker_answers_and_skips_missing_listings_without_loading_the_model(celery_worker_process):
    from classifier.listings.tasks import classify_listings

    assert celery_worker_process.pid
    result = classify_listings.delay([987654321]).get(timeout=60)
    assert result["missing"] == 1 and result["classified"] == 0


@pytest.fixture
def worker_extra_env() -> dict[str, str]:
    # Small batches and no opportunistic top-up: each message is exactly one batch of 3.
    return {"INFERENCE_BATCH_SIZE": "3", "INFERENCE_COALESCE": "false"}


def test_killed_worker_mid_batch_redelivers_and_every_listing_gets_exactly_one_prediction(
    celery_worker_process, seeded_knowledge, make_catalogue_listings, demo_model_dir
):
    from classifier.listings.tasks import classify_listings

    listings = make_catalogue_listings(12)
    ids = [listing.pk for listing in listings]
    for start in range(0, len(ids), 3):
        classify_listings.delay(ids[start : start + 3])
    # Kill as soon as the first batch is written: the next batch is running or queued.
    wait_until(
        lambda: Prediction.objects.filter(listing_id__in=ids).exists(), timeout=240, what="a first prediction"
    )
    celery_worker_process.stop(kill=True)
    done_at_kill = Prediction.objects.filter(listing_id__in=ids).count()
    assert done_at_kill < len(ids), (
        "the worker finished everything before it was killed; nothing to redeliver"
    )

    # The broker hands back what the dead worker held once its visibility timeout (15 s) has
    # passed; a worker scans for such messages when it starts, so start it after that.
    time.sleep(16)
    celery_worker_process.start()
    wait_until(
        lambda: Prediction.objects.filter(listing_id__in=ids).count() >= len(ids),
        timeout=240,
        what="every listing to be classified after the restart",
    )
    per_listing = {i: Prediction.objects.filter(listing_id=i).count() for i in ids}
    assert set(per_listing.values()) == {1}, per_listing
    assert not Listing.objects.filter(pk__in=ids, status=Listing.Status.QUEUED).exists()
