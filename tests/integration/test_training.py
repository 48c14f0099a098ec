"""Fine-tuning jobs, the gate, promotion/rollback and drift: services and pages (no model run here)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from classifier.models import (
    AuditEvent,
    DriftAlert,
    ModelEvaluation,
    ModelVersion,
    Prediction,
    ReviewDecision,
    TrainingJob,
)
from classifier.registry import services as registry_services
from classifier.training import drift as training_drift
from classifier.training import services as svc
from tests import factories

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def _version(tmp_path: Path, name: str, *, status=ModelVersion.Status.CANDIDATE, parent=None, content=b"w"):
    from classifier.registry.artifacts import file_sha256

    d = tmp_path / name
    d.mkdir()
    (d / "model.safetensors").write_bytes(content + name.encode())
    return ModelVersion.objects.create(
        name=name,
        artifact_dir=str(d),
        checksum=file_sha256(d / "model.safetensors"),
        status=status,
        parent=parent,
        promoted_at=timezone.now() if status == ModelVersion.Status.PROMOTED else None,
    )


def _correction(auditor, *, at: dt.datetime | None = None) -> ReviewDecision:
    task = factories.review_task()
    shirts = factories.category_path("Apparel", "Topwear", "Shirts")
    d = ReviewDecision.objects.create(
        task=task,
        listing=task.listing,
        auditor=auditor,
        action=ReviewDecision.Action.CORRECT,
        category=shirts,
        is_training_example=True,
    )
    if at is not None:
        ReviewDecision.objects.filter(pk=d.pk).update(created_at=at)
    return d


def _passed(version, baseline):
    return ModelEvaluation.objects.create(
        candidate=version, baseline=baseline, eval_set="frozen:x", passed=True, margin_points=0.5
    )


@pytest.fixture(autouse=True)
def _static(settings):
    factories.plain_static_storage(settings)
    settings.FINETUNE_MIN_CORRECTIONS = 1  # these tests are about jobs, not the minimum (tested below)


@pytest.fixture
def prod(tmp_path):
    return _version(tmp_path, "v0", status=ModelVersion.Status.PROMOTED)


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def test_every_page_and_action_needs_manage_models(client, auditor, ops_user, prod):
    job = TrainingJob.objects.create(base_version=prod, data_window_end=timezone.now())
    gets = [
        reverse("model-list"),
        reverse("model-detail", args=[prod.pk]),
        reverse("model-compare"),
        reverse("training-new"),
        reverse("training-detail", args=[job.pk]),
    ]
    posts = [
        reverse("model-promote", args=[prod.pk]),
        reverse("model-rollback"),
        reverse("model-evaluate", args=[prod.pk]),
        reverse("training-new"),
        reverse("training-cancel", args=[job.pk]),
    ]
    for user in (auditor, ops_user):
        client.force_login(user)
        for url in gets:
            assert client.get(url).status_code == 403, url
        for url in posts:
            assert client.post(url, {"confirm": "yes"}).status_code == 403, url
    client.logout()
    assert client.get(reverse("model-list")).status_code == 302  # to the login page


def test_job_with_no_new_corrections_is_refused_with_the_reason(admin_client, admin_user, prod):
    r = admin_client.post(reverse("training-new"), {"base_version": prod.pk, "epochs": 2})
    assert r.status_code == 200
    assert "no approved corrections" in r.content.decode()
    assert not TrainingJob.objects.exists()


def test_second_job_is_refused_while_one_is_queued_and_the_page_says_which(
    admin_client, admin_user, auditor, prod, django_capture_on_commit_callbacks
):
    _correction(auditor)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:  # no worker: the job stays queued
        r = admin_client.post(reverse("training-new"), {"base_version": prod.pk, "epochs": 2})
    job = TrainingJob.objects.get()
    assert r.status_code == 302 and r["Location"] == reverse("training-detail", args=[job.pk])
    assert job.status == TrainingJob.Status.QUEUED and job.example_count == 1 and len(callbacks) == 1
    r = admin_client.post(reverse("training-new"), {"base_version": prod.pk, "epochs": 2})
    assert f"training job #{job.pk} is queued (one job at a time)" in r.content.decode()
    assert TrainingJob.objects.count() == 1
    assert AuditEvent.objects.filter(verb="training.start").count() == 1


def test_a_job_with_fewer_corrections_than_the_configured_minimum_is_refused(
    admin_client, auditor, prod, settings
):
    settings.FINETUNE_MIN_CORRECTIONS = 5
    for _ in range(3):
        _correction(auditor)
    r = admin_client.post(reverse("training-new"), {"base_version": prod.pk, "epochs": 2})
    html = r.content.decode()
    assert "only 3 approved corrections yet; fine-tuning needs at least 5 (FINETUNE_MIN_CORRECTIONS)" in html
    assert not TrainingJob.objects.exists()
    page = admin_client.get(reverse("training-new")).content.decode()
    assert 'id="min-corrections">5<' in page  # the form says the minimum before anyone tries
    for _ in range(2):
        _correction(auditor)
    job = svc.training_job_start(actor=None, base_version=prod, epochs=1)
    assert job.example_count == 5


def test_invalid_epochs_and_window_are_refused(admin_client, auditor, prod):
    _correction(auditor)
    r = admin_client.post(reverse("training-new"), {"base_version": prod.pk, "epochs": 0})
    assert "greater than or equal to 1" in r.content.decode()
    with pytest.raises(ValidationError, match="must start before"):
        svc.training_job_start(
            actor=None,
            base_version=prod,
            epochs=1,
            window_start=timezone.now(),
            window_end=timezone.now() - dt.timedelta(hours=1),
        )
    assert not TrainingJob.objects.exists()


def test_the_window_counts_only_corrections_after_the_base_versions_data(auditor, prod):
    old = timezone.now() - dt.timedelta(days=3)
    _correction(auditor, at=old)
    prod.data_window_end = timezone.now() - dt.timedelta(days=1)
    prod.save()
    start = svc.training_window_default_start(base_version=prod)
    with pytest.raises(ValidationError, match="no approved corrections since"):
        svc.training_job_start(actor=None, base_version=prod, epochs=1, window_start=start)
    _correction(auditor)
    job = svc.training_job_start(actor=None, base_version=prod, epochs=1, window_start=start)
    assert job.example_count == 1


def test_a_job_already_running_or_finished_is_not_run_twice(prod):
    job = TrainingJob.objects.create(
        base_version=prod,
        data_window_end=timezone.now(),
        status=TrainingJob.Status.RUNNING,
        heartbeat_at=timezone.now(),
    )
    assert svc.training_job_run(job_id=job.pk).status == TrainingJob.Status.RUNNING
    TrainingJob.objects.filter(pk=job.pk).update(status=TrainingJob.Status.SUCCEEDED)
    assert svc.training_job_run(job_id=job.pk).status == TrainingJob.Status.SUCCEEDED
    assert svc.training_job_run(job_id=987654) is None


def test_a_killed_worker_leaves_a_stale_heartbeat_and_the_sweep_fails_the_job(prod):
    now = timezone.now()
    job = TrainingJob.objects.create(
        base_version=prod,
        data_window_end=now,
        status=TrainingJob.Status.RUNNING,
        heartbeat_at=now - dt.timedelta(minutes=10),
    )
    fresh = None
    assert svc.training_jobs_fail_stale(now=now) == 1
    job.refresh_from_db()
    assert job.status == TrainingJob.Status.FAILED and "no heartbeat since" in job.error and job.finished_at
    fresh = TrainingJob.objects.create(
        base_version=prod, data_window_end=now, status=TrainingJob.Status.RUNNING, heartbeat_at=now
    )
    assert svc.training_jobs_fail_stale(now=now) == 0
    fresh.refresh_from_db()
    assert fresh.status == TrainingJob.Status.RUNNING


def test_cancel_a_queued_job_at_once_and_flag_a_running_one(admin_client, prod):
    job = TrainingJob.objects.create(base_version=prod, data_window_end=timezone.now())
    admin_client.post(reverse("training-cancel", args=[job.pk]))
    job.refresh_from_db()
    assert job.status == TrainingJob.Status.CANCELLED
    running = TrainingJob.objects.create(
        base_version=prod,
        data_window_end=timezone.now(),
        status=TrainingJob.Status.RUNNING,
        heartbeat_at=timezone.now(),
    )
    admin_client.post(reverse("training-cancel", args=[running.pk]))
    running.refresh_from_db()
    assert running.status == TrainingJob.Status.RUNNING and running.cancel_requested
    # the worker's progress callback sees the flag and asks finetune() to stop
    reporter = svc._Reporter(running.pk, every_s=0)
    assert (
        reporter(
            {
                "phase": "training",
                "epoch": 1,
                "epochs": 2,
                "step": 1,
                "total_steps": 4,
                "loss": 1.0,
                "eta_s": 3.0,
            }
        )
        is False
    )


def test_progress_partial_polls_every_two_seconds_while_running_and_stops_after(admin_client, prod):
    job = TrainingJob.objects.create(
        base_version=prod,
        data_window_end=timezone.now(),
        status=TrainingJob.Status.RUNNING,
        heartbeat_at=timezone.now(),
        epoch=2,
        step=5,
        total_steps=9,
        loss=0.4321,
        eta_seconds=12,
        log="a\n<b>x</b>\n",
    )
    r = admin_client.get(reverse("training-detail", args=[job.pk]), HTTP_HX_REQUEST="true")
    html = r.content.decode()
    assert 'hx-trigger="every 2s"' in html and "epoch 2/3" in html and "0.4321" in html and "ETA 12 s" in html
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html  # the log is escaped
    assert "<html" not in html  # a fragment
    TrainingJob.objects.filter(pk=job.pk).update(status=TrainingJob.Status.SUCCEEDED)
    html = admin_client.get(
        reverse("training-detail", args=[job.pk]), HTTP_HX_REQUEST="true"
    ).content.decode()
    assert "hx-trigger" not in html and "Succeeded" in html


def test_promotion_needs_a_passed_gate_and_shows_why_it_is_refused(admin_client, admin_user, prod, tmp_path):
    cand = _version(tmp_path, "v1", parent=prod)
    r = admin_client.post(reverse("model-promote", args=[cand.pk]), {"confirm": "yes"}, follow=True)
    assert "has not been evaluated yet" in r.content.decode()
    ModelEvaluation.objects.create(
        candidate=cand,
        baseline=prod,
        eval_set="frozen:x",
        passed=False,
        reasons=["frozen evaluation set: leaf accuracy 80.0% vs 82.0% (-2.0 points)"],
        margin_points=0.5,
    )
    r = admin_client.post(reverse("model-promote", args=[cand.pk]), {"confirm": "yes"}, follow=True)
    html = r.content.decode()
    assert "the evaluation gate refused v1" in html and "-2.0 points" in html
    page = admin_client.get(reverse("model-detail", args=[cand.pk])).content.decode()
    assert 'id="gate-reasons"' in page and "-2.0 points" in page
    prod.refresh_from_db()
    assert prod.status == ModelVersion.Status.PROMOTED


def test_promote_needs_confirmation_then_swaps_and_rollback_restores(
    admin_client, admin_user, prod, tmp_path
):
    cand = _version(tmp_path, "v1", parent=prod)
    _passed(cand, prod)
    admin_client.post(reverse("model-promote", args=[cand.pk]), {})
    cand.refresh_from_db()
    assert cand.status == ModelVersion.Status.CANDIDATE  # no confirmation, nothing happened
    admin_client.post(reverse("model-promote", args=[cand.pk]), {"confirm": "yes"})
    cand.refresh_from_db()
    prod.refresh_from_db()
    assert cand.status == ModelVersion.Status.PROMOTED and prod.status == ModelVersion.Status.RETIRED
    assert AuditEvent.objects.filter(verb="model.promote", object_id=str(cand.pk), actor=admin_user).exists()
    admin_client.post(reverse("model-rollback"), {"confirm": "yes"})
    cand.refresh_from_db()
    prod.refresh_from_db()
    assert prod.status == ModelVersion.Status.PROMOTED and cand.status == ModelVersion.Status.RETIRED
    assert AuditEvent.objects.filter(verb="model.rollback", object_id=str(prod.pk)).exists()


def test_an_artifact_that_fails_its_checksum_is_refused_and_production_keeps_serving(
    admin_client, prod, tmp_path
):
    cand = _version(tmp_path, "v1", parent=prod)
    _passed(cand, prod)
    (Path(cand.artifact_dir) / "model.safetensors").write_bytes(b"tampered")
    r = admin_client.post(reverse("model-promote", args=[cand.pk]), {"confirm": "yes"}, follow=True)
    assert "fails its checksum" in r.content.decode()
    prod.refresh_from_db()
    assert prod.status == ModelVersion.Status.PROMOTED


def test_rollback_while_a_job_runs_is_allowed_and_the_job_result_stays_a_candidate(
    admin_client, prod, tmp_path
):
    v1 = _version(tmp_path, "v1", parent=prod)
    _passed(v1, prod)
    registry_services.model_version_promote(version=v1, actor=None)
    job = TrainingJob.objects.create(
        base_version=v1,
        data_window_end=timezone.now(),
        status=TrainingJob.Status.RUNNING,
        heartbeat_at=timezone.now(),
    )
    admin_client.post(reverse("model-rollback"), {"confirm": "yes"})
    prod.refresh_from_db()
    assert prod.status == ModelVersion.Status.PROMOTED
    job.refresh_from_db()
    assert job.status == TrainingJob.Status.RUNNING
    v2 = _version(tmp_path, "v2", parent=v1)  # what the job registers when it ends
    assert v2.status == ModelVersion.Status.CANDIDATE


def test_registry_and_comparison_pages_render_lineage_and_svg_charts(admin_client, prod, tmp_path):
    cand = _version(tmp_path, "v1", parent=prod)
    frozen = {
        "n": 300,
        "accuracy": {"master": 0.99, "sub": 0.95, "article": 0.9},
        "per_category": {"Apparel > Topwear > Tshirts": [60, 55]},
        "ece": 0.03,
        "review_rate": 0.2,
        "auto_accept_precision": 0.99,
        "latency_ms": {"mean": 8.0, "p95": 15.0},
    }
    for v in (prod, cand):
        v.metrics = {"frozen_eval": {"set": "frozen:x", "metrics": frozen}}
        v.save()
    html = admin_client.get(reverse("model-list")).content.decode()
    assert "v0" in html and "v1" in html and "90.0%" in html and prod.checksum[:10] in html
    html = admin_client.get(reverse("model-compare"), {"a": prod.pk, "b": cand.pk}).content.decode()
    assert html.count("<svg") == 4 and "Tshirts (n=60)" in html and "cdn" not in html.lower()


def test_drift_monitor_raises_one_alert_and_can_start_a_job(settings, auditor, prod):
    settings.DRIFT_MIN_CHECKS = 10
    settings.DRIFT_AUTO_FINETUNE = True
    now = timezone.now()
    tshirts = factories.category_path("Apparel", "Topwear", "Tshirts")
    shirts = factories.category_path("Apparel", "Topwear", "Shirts")

    def checked(right: bool, when: dt.datetime):
        task = factories.review_task(category=tshirts, version=prod)
        Prediction.objects.filter(pk=task.prediction_id).update(needs_review=False, created_at=when)
        ReviewDecision.objects.create(
            task=task,
            listing=task.listing,
            auditor=auditor,
            action=ReviewDecision.Action.APPROVE if right else ReviewDecision.Action.CORRECT,
            category=tshirts if right else shirts,
            is_training_example=True,
        )

    for _ in range(10):  # before the window: 100% right
        checked(True, now - dt.timedelta(days=20))
    for i in range(10):  # last week: 70% right
        checked(i < 7, now - dt.timedelta(days=1))
    alert = training_drift.drift_check(now=now)
    assert alert is not None and alert.drop_points == pytest.approx(30.0)
    assert alert.training_job is not None and alert.training_job.trigger == TrainingJob.Trigger.DRIFT
    assert training_drift.drift_check(now=now) is None  # one open alert per version
    assert DriftAlert.objects.count() == 1


def test_drift_alert_is_shown_to_admins_and_can_be_resolved(admin_client, prod):
    alert = DriftAlert.objects.create(
        model_version=prod,
        baseline_accuracy=0.97,
        current_accuracy=0.85,
        checked_items=40,
        detail="34/40 right",
    )
    html = admin_client.get(reverse("model-list")).content.decode()
    assert f'id="drift-alert-{alert.pk}"' in html and "12.0 points" in html
    admin_client.post(reverse("drift-resolve", args=[alert.pk]))
    alert.refresh_from_db()
    assert alert.resolved_at is not None
