"""End to end with a real Celery worker: approved corrections -> job -> candidate -> gate -> promotion ->
the next prediction carries the new version; rollback brings the old one back."""

from __future__ import annotations

import pytest
from django.urls import reverse

from classifier.models import ModelVersion, Prediction, ReviewDecision, ReviewTask, TrainingJob
from tests import factories
from tests.integration.conftest import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def worker_extra_env(tmp_path) -> dict[str, str]:
    # Small and quick on a shared CPU: 40 frozen items, 40 replay rows, 1 epoch. The margins are wide
    # because a one-epoch job on 12 corrections moves a 40-item accuracy by noise; the gate's refusals
    # are covered in test_training.py and tests/unit/test_finetune.py.
    return {
        "FUSION_VERSIONS_DIR": str(tmp_path / "versions"),
        "FUSION_EVAL_SIZE": "40",
        "FINETUNE_MIN_CORRECTIONS": "10",
        "FINETUNE_REPLAY_MAX": "40",
        "PROMOTION_MARGIN": "100",
        "PROMOTION_CATEGORY_MARGIN": "100",
        "TRAINING_HEARTBEAT_TIMEOUT": "600",
        # each classify message classifies exactly the listing it names (no opportunistic top-up)
        "INFERENCE_COALESCE": "false",
    }


def _approve_corrections(listings, auditor, version):
    """What auditors leave behind: a task per listing, decided 'correct' to the catalogue's true category."""
    import csv

    from knowledge.graph.selectors import category_by_path_label
    from tests.conftest import DATA_DIR

    truth = {}
    with open(DATA_DIR / "catalogue.csv", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            truth[row["id"]] = f"{row['master_category']} > {row['sub_category']} > {row['article_type']}"
    for listing in listings:
        category = category_by_path_label(truth[listing.external_id])
        listing.status = listing.Status.REVIEWED
        listing.final_category = category
        listing.save(update_fields=["status", "final_category"])
        prediction = Prediction.objects.create(
            listing=listing, model_version=version, **factories._prediction_fields(category, 0.4, None)
        )
        task = ReviewTask.objects.create(
            listing=listing,
            prediction=prediction,
            reason=ReviewTask.Reason.LOW_CONFIDENCE,
            status=ReviewTask.Status.DONE,
            category=category,
        )
        ReviewDecision.objects.create(
            task=task,
            listing=listing,
            auditor=auditor,
            action=ReviewDecision.Action.CORRECT,
            category=category,
            is_training_example=True,
        )


def test_corrections_to_promoted_version_to_prediction_and_rollback(
    celery_worker_process,
    seeded_knowledge,
    make_catalogue_listings,
    demo_model_dir,
    client,
    admin_user,
    auditor,
    settings,
):
    from classifier.listings.tasks import classify_listings
    from classifier.registry.services import model_version_bundled_register

    factories.plain_static_storage(settings)
    settings.FINETUNE_MIN_CORRECTIONS = 10  # the web process refuses below it too (worker: worker_extra_env)
    v0 = model_version_bundled_register()
    assert v0.status == ModelVersion.Status.PROMOTED
    corrections = make_catalogue_listings(12, split="val", source="reviewed")
    _approve_corrections(corrections, auditor, v0)

    client.force_login(admin_user)
    r = client.post(reverse("training-new"), {"base_version": v0.pk, "epochs": 1})
    assert r.status_code == 302, r.content.decode()[-2000:]
    job = TrainingJob.objects.get()
    wait_until(
        lambda: TrainingJob.objects.filter(
            pk=job.pk, status__in=["succeeded", "failed", "cancelled"]
        ).exists(),
        timeout=480,
        interval=2,
        what="the training job to finish",
    )
    job.refresh_from_db()
    assert job.status == TrainingJob.Status.SUCCEEDED, (
        job.error,
        job.log,
        celery_worker_process.log_text()[-3000:],
    )
    assert job.example_count == 12 and job.replay_count == 24 and job.epoch == 1 and job.loss is not None
    v1 = job.result_version
    assert v1.parent_id == v0.pk and v1.status == ModelVersion.Status.CANDIDATE
    evaluation = v1.evaluations.get()
    assert evaluation.passed and evaluation.baseline_id == v0.pk
    assert evaluation.candidate_metrics["frozen"]["n"] == 40
    # the 12 recent reviews are the candidate's own training data: left out of the recent-review check
    assert evaluation.candidate_metrics["recent"] is None

    r = client.post(reverse("model-promote", args=[v1.pk]), {"confirm": "yes"})
    v1.refresh_from_db()
    assert v1.status == ModelVersion.Status.PROMOTED

    fresh = make_catalogue_listings(1, split="test", source="fresh")
    classify_listings.delay([fresh[0].pk])
    wait_until(lambda: Prediction.objects.filter(listing=fresh[0]).exists(), timeout=240, what="a prediction")
    assert Prediction.objects.get(listing=fresh[0]).model_version_id == v1.pk

    client.post(reverse("model-rollback"), {"confirm": "yes"})
    v0.refresh_from_db()
    assert v0.status == ModelVersion.Status.PROMOTED
    fresh = make_catalogue_listings(2, split="test", source="fresh")  # the second is new
    classify_listings.delay([fresh[1].pk])
    wait_until(lambda: Prediction.objects.filter(listing=fresh[1]).exists(), timeout=240, what="a prediction")
    assert Prediction.objects.get(listing=fresh[1]).model_version_id == v0.pk
