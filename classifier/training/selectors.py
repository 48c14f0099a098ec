"""Fine-tuning reads: jobs, drift alerts and the auto-accept accuracy the drift monitor watches."""

from __future__ import annotations

import datetime as dt

from django.db.models import QuerySet

from classifier.listings.models import Prediction
from classifier.registry.models import ModelVersion
from classifier.review.examples import TRAINING_ACTIONS
from classifier.review.models import ReviewDecision
from classifier.training.models import DriftAlert, TrainingJob


def training_job_active() -> TrainingJob | None:
    return TrainingJob.objects.filter(status__in=TrainingJob.ACTIVE_STATUSES).first()


def training_jobs_recent(*, limit: int = 20) -> QuerySet[TrainingJob]:
    return TrainingJob.objects.select_related("base_version", "result_version", "requested_by")[:limit]


def training_job_get(*, job_id: int) -> TrainingJob | None:
    return (
        TrainingJob.objects.select_related("base_version", "result_version", "requested_by")
        .filter(pk=job_id)
        .first()
    )


def drift_alerts_open() -> QuerySet[DriftAlert]:
    return DriftAlert.objects.filter(resolved_at__isnull=True).select_related("model_version", "training_job")


def auto_accept_accuracy(
    *, version: ModelVersion, since: dt.datetime | None, until: dt.datetime | None
) -> tuple[int, int]:
    """(checked, correct) for the version's auto-accepted predictions that a person later looked at.

    A spot check or review of an auto-accepted listing is a decision on it: approve (or a correction
    to the same category) means the model was right, a correction to another category means wrong.
    """
    preds = Prediction.objects.filter(model_version=version, is_shadow=False, needs_review=False)
    if since is not None:
        preds = preds.filter(created_at__gte=since)
    if until is not None:
        preds = preds.filter(created_at__lt=until)
    rows = preds.values_list("listing_id", "category_id")
    predicted = dict(rows)
    if not predicted:
        return 0, 0
    checked = correct = 0
    seen: set[int] = set()
    decisions = (
        ReviewDecision.objects.filter(listing_id__in=list(predicted), action__in=TRAINING_ACTIONS)
        .order_by("listing_id", "-created_at")
        .values_list("listing_id", "action", "category_id")
    )
    for listing_id, action, category_id in decisions:
        if listing_id in seen:
            continue
        seen.add(listing_id)
        checked += 1
        if action == ReviewDecision.Action.APPROVE or category_id == predicted[listing_id]:
            correct += 1
    return checked, correct
