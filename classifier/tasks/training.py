"""Fine-tuning on the `training` queue; the heartbeat sweep and the drift monitor on `default` (beat)."""

from __future__ import annotations

import logging

from celery import shared_task

__all__ = ["drift_check", "evaluate_model_version", "train_model_version", "training_jobs_sweep"]

log = logging.getLogger(__name__)


@shared_task(name="classifier.tasks.train_model_version", acks_late=True)
def train_model_version(job_id: int) -> str | None:
    """Run one fine-tuning job. Idempotent: the job is claimed queued -> running, so a redelivered message
    (acks_late after a lost worker) finds it running or finished and does nothing."""
    from classifier.services.training import training_job_run

    job = training_job_run(job_id=job_id)
    return job.status if job is not None else None


@shared_task(name="classifier.tasks.evaluate_model_version", acks_late=True)
def evaluate_model_version(version_id: int, actor_id: int | None = None) -> bool | None:
    """Run the evaluation gate for a version again (e.g. after production changed)."""
    from django.contrib.auth import get_user_model

    from classifier.models import ModelVersion
    from classifier.services.training import model_version_evaluate

    version = ModelVersion.objects.filter(pk=version_id).first()
    if version is None:
        log.warning("model version %s vanished; nothing to evaluate", version_id)
        return None
    actor = get_user_model().objects.filter(pk=actor_id).first() if actor_id else None
    return model_version_evaluate(version=version, actor=actor).passed


@shared_task(name="classifier.tasks.training_jobs_sweep", ignore_result=True)
def training_jobs_sweep() -> int:
    """Fail running jobs whose worker stopped sending heartbeats (beat, every minute)."""
    from classifier.services.training import training_jobs_fail_stale

    return training_jobs_fail_stale()


@shared_task(name="classifier.tasks.drift_check", ignore_result=True)
def drift_check() -> int | None:
    """The drift monitor (beat, hourly): alert, and optionally fine-tune, when auto-accept accuracy drops."""
    from classifier.services.training import drift_check as check

    alert = check()
    return alert.pk if alert is not None else None
