"""Fine-tuning on the `training` queue; the heartbeat sweep and the drift monitor on `default` (beat)."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging

from celery import shared_task
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from classifier.registry.models import ModelEvaluation, ModelVersion
from classifier.registry.tasks import evaluate_model_version
from classifier.training.drift import drift_check as check
from classifier.training.models import TrainingJob
from classifier.training.services import training_job_run, training_jobs_fail_stale
from fusionreview.dispatch import task_publish

log = logging.getLogger(__name__)
TRAINING_SENT_KEY = "training:sent:{kind}:{id}"
TRAINING_SENDS_KEY = "training:evaluation-sends:{id}"


@shared_task(name="classifier.tasks.train_model_version", acks_late=True)
def train_model_version(job_id: int) -> str | None:
    """Run one fine-tuning job. Idempotent: the job is claimed queued -> running, so a redelivered message
    (acks_late after a lost worker) finds it running or finished and does nothing."""

    job = training_job_run(job_id=job_id)
    return job.status if job is not None else None


@shared_task(name="classifier.tasks.training_jobs_sweep", ignore_result=True)
def training_jobs_sweep() -> dict[str, int]:
    """Beat, every minute: fail running jobs whose worker stopped sending heartbeats, and send again the
    training jobs and first evaluations whose message never reached a worker (see `training_resend_lost`)."""

    failed = training_jobs_fail_stale()
    return {"stale_failed": failed, **training_resend_lost()}


def training_resend_lost(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Send again the training-queue work whose message is gone (broker down at the send, Redis restarted).

    - a training job still `queued` TRAINING_REDISPATCH_AFTER seconds after it was created;
    - a registered version (candidate or in production) still without any evaluation that long after
      registration, when EVALUATE_ON_REGISTER is on (at most TRAINING_EVALUATION_MAX_SENDS times: an
      evaluation that keeps failing is for an admin to look at, not to loop on).

    Each send leaves a "sent" mark for TRAINING_REDISPATCH_AFTER seconds, so a message that is merely
    waiting behind a long job on the training queue is not sent again before that. Sending twice is
    harmless: a job is claimed queued -> running once (a running or finished job is never started
    again) and a re-sent evaluation stops when the version has one.
    """

    now = now or timezone.now()
    cutoff = now - dt.timedelta(seconds=settings.TRAINING_REDISPATCH_AFTER)
    jobs = list(
        TrainingJob.objects.filter(status=TrainingJob.Status.QUEUED, created_at__lt=cutoff)
        .order_by("created_at")
        .values_list("pk", flat=True)[:20]
    )
    versions: list[int] = []
    if settings.EVALUATE_ON_REGISTER:
        versions = list(
            ModelVersion.objects.filter(
                created_at__lt=cutoff,
                status__in=[ModelVersion.Status.CANDIDATE, ModelVersion.Status.PROMOTED],
            )
            .exclude(pk__in=ModelEvaluation.objects.values("candidate_id"))
            .order_by("created_at")
            .values_list("pk", flat=True)[:20]
        )
    work = [("job", pk) for pk in jobs] + [("evaluation", pk) for pk in versions]
    try:
        marks = cache.get_many([TRAINING_SENT_KEY.format(kind=k, id=i) for k, i in work])
        sends = cache.get_many([TRAINING_SENDS_KEY.format(id=i) for _, i in work if _ == "evaluation"])
    except Exception:  # the cache is down: send anyway (duplicates are harmless, loss is not)
        marks, sends = {}, {}
    report = {"jobs_resent": 0, "evaluations_resent": 0, "unsent": 0}
    for kind, pk in work:
        if TRAINING_SENT_KEY.format(kind=kind, id=pk) in marks:
            continue
        if kind == "job":
            sent = task_publish(train_model_version, args=[pk])
        else:
            count = int(sends.get(TRAINING_SENDS_KEY.format(id=pk), 0))
            if count >= settings.TRAINING_EVALUATION_MAX_SENDS:
                continue
            sent = task_publish(evaluate_model_version, args=[pk, None], kwargs={"if_unevaluated": True})
            if sent:
                with contextlib.suppress(Exception):
                    cache.set(TRAINING_SENDS_KEY.format(id=pk), count + 1, timeout=7 * 24 * 3600)
        if not sent:  # the broker is down: the next sweep tries again
            report["unsent"] += 1
            continue
        with contextlib.suppress(Exception):
            cache.set(
                TRAINING_SENT_KEY.format(kind=kind, id=pk), 1, timeout=settings.TRAINING_REDISPATCH_AFTER
            )
        report["jobs_resent" if kind == "job" else "evaluations_resent"] += 1
    if report["jobs_resent"] or report["evaluations_resent"] or report["unsent"]:
        log.info("training sweep: %s", report)
    return report


@shared_task(name="classifier.tasks.drift_check", ignore_result=True)
def drift_check() -> int | None:
    """The drift monitor (beat, hourly): alert, and optionally fine-tune, when auto-accept accuracy drops."""

    alert = check()
    return alert.pk if alert is not None else None
