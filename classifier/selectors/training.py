"""Reads for fine-tuning: training examples from reviews, jobs, the model registry, drift figures."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import QuerySet

from classifier.models import (
    DriftAlert,
    ModelEvaluation,
    ModelVersion,
    Prediction,
    ReviewDecision,
    TrainingJob,
)
from classifier.selectors.review import training_examples_since

TRAINING_ACTIONS = (ReviewDecision.Action.APPROVE, ReviewDecision.Action.CORRECT)


@dataclass(frozen=True)
class LabelledListing:
    """One listing with the label a person gave it (a training example or an evaluation item)."""

    listing_id: int
    image_path: str
    title: str
    category_id: str  # snapshot id: the path label "Apparel > Topwear > Tshirts"
    brand: str
    decided_at: dt.datetime


def _decisions_in_window(start: dt.datetime | None, end: dt.datetime | None) -> QuerySet[ReviewDecision]:
    # The review area's selector defines what counts as a training example (one definition).
    qs = training_examples_since(since=start)
    return qs.filter(created_at__lte=end) if end is not None else qs


def training_examples_in_window(
    *, start: dt.datetime | None, end: dt.datetime | None, labels: dict[int, str] | None = None
) -> list[LabelledListing]:
    """Approved/corrected decisions in (start, end] as labelled listings, latest decision per listing."""
    from knowledge.graph.selectors import category_path_labels

    labels = labels if labels is not None else category_path_labels()
    qs = (
        _decisions_in_window(start, end)
        .select_related("listing", "listing__final_category", "category", "brand", "listing__final_brand")
        .order_by("listing_id", "-created_at")
    )
    out: dict[int, LabelledListing] = {}
    for d in qs:
        if d.listing_id in out:
            continue
        category_pk = d.category_id or d.listing.final_category_id
        if category_pk is None or category_pk not in labels or not d.listing.image:
            continue
        brand = d.brand or d.listing.final_brand
        out[d.listing_id] = LabelledListing(
            listing_id=d.listing_id,
            image_path=d.listing.image.path,
            title=d.listing.title,
            category_id=labels[category_pk],
            brand=brand.name if brand else "",
            decided_at=d.created_at,
        )
    return list(out.values())


def training_example_count(*, start: dt.datetime | None, end: dt.datetime | None) -> int:
    """How many listings have an approved correction in (start, end]."""
    return _decisions_in_window(start, end).values("listing_id").distinct().count()


def recent_reviewed_items(*, since: dt.datetime, limit: int) -> list[LabelledListing]:
    """The latest `limit` listings people approved or corrected since `since` (the gate's second set)."""
    items = training_examples_in_window(start=since, end=None)
    items.sort(key=lambda i: i.decided_at, reverse=True)
    return items[:limit]


# --- jobs -----------------------------------------------------------------------------------------


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


# --- registry ---------------------------------------------------------------------------------------


def model_versions_all() -> QuerySet[ModelVersion]:
    return ModelVersion.objects.select_related("parent", "trained_by").order_by("-created_at")


def model_version_get(*, version_id: int) -> ModelVersion | None:
    return ModelVersion.objects.select_related("parent", "trained_by").filter(pk=version_id).first()


def model_version_promoted() -> ModelVersion | None:
    return ModelVersion.objects.filter(status=ModelVersion.Status.PROMOTED).first()


def model_version_rollback_target() -> ModelVersion | None:
    """What a rollback promotes: the version in production before the current one, else its parent."""
    current = model_version_promoted()
    qs = ModelVersion.objects.filter(promoted_at__isnull=False).exclude(status=ModelVersion.Status.PROMOTED)
    if current is not None:
        qs = qs.exclude(pk=current.pk)
        if current.promoted_at is not None:
            qs = qs.filter(promoted_at__lt=current.promoted_at)
    previous = qs.order_by("-promoted_at").first()
    if previous is not None:
        return previous
    return current.parent if current is not None else None


def model_evaluation_latest(*, version: ModelVersion) -> ModelEvaluation | None:
    return version.evaluations.select_related("baseline").first()


# --- drift -----------------------------------------------------------------------------------------


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


# --- a version's page: figures on the frozen set ---------------------------------------------------


def model_version_frozen(*, version: ModelVersion) -> dict[str, object]:
    """{"set", "metrics", "items"} from the version's last frozen-set evaluation ({} if none)."""
    return (version.metrics or {}).get("frozen_eval") or {}


def model_versions_history(*, set_name: str) -> list[dict[str, object]]:
    """Every version evaluated on the frozen set `set_name`, oldest first: name, accuracy per level, status.

    Figures on another set are left out: accuracies are only comparable on the same items.
    """
    rows = []
    for version in ModelVersion.objects.order_by("created_at", "pk").only("name", "metrics", "status"):
        frozen = model_version_frozen(version=version)
        metrics = frozen.get("metrics")
        accuracy = metrics.get("accuracy") if isinstance(metrics, dict) else None
        if frozen.get("set") == set_name and accuracy:
            rows.append(
                {
                    "pk": version.pk,
                    "name": version.name,
                    "accuracy": accuracy,
                    "promoted": version.status == ModelVersion.Status.PROMOTED,
                }
            )
    return rows
