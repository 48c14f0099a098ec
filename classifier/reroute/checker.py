"""Which open review tasks a knowledge snapshot would still send to a person.

The same rule decides everywhere: `classifier.fusion.verification.verify` on the title's entities
(extracted with the snapshot's gazetteer), then `classifier.fusion.routing.route` at the
prediction's model version's review threshold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from classifier.fusion.knowledge import KnowledgeSnapshot
from classifier.fusion.outcome import names_type
from classifier.fusion.routing import RouteDecision, RouteReason, from_the_model, route, title_threshold
from classifier.fusion.text import EntityExtractor
from classifier.fusion.verification import verify
from classifier.models import Listing, ModelVersion, Prediction, ReviewTask
from classifier.registry.artifacts import artifact_calibration_value, artifact_review_threshold
from knowledge.graph.selectors import category_path_labels
from knowledge.ports import ReroutePlan, RowIds

KNOWLEDGE_ROUTE_REASONS = (RouteReason.KNOWLEDGE_CONFLICT.value, RouteReason.UNKNOWN_CATEGORY.value)


def threshold_for(version: ModelVersion | None) -> float:
    """The review threshold a prediction of `version` is routed at (the same as the pipeline's)."""
    if settings.REVIEW_THRESHOLD is not None:
        return float(settings.REVIEW_THRESHOLD)
    if version is not None and version.review_threshold is not None:
        return float(version.review_threshold)
    if version is not None:
        stored = artifact_review_threshold(version.artifact_dir)
        if stored is not None:
            return stored
    return 1.0  # unknown: everything stays with a person


def untyped_threshold_for(version: ModelVersion | None) -> float | None:
    """The stricter threshold the engine holds a title that names no product type to (chosen on `val`
    and stored with the model; None when the model has none): the checker routes such titles the same way."""
    if version is None:
        return None
    return artifact_calibration_value(version.artifact_dir, "untyped_threshold")


def knowledge_routed_open_tasks() -> QuerySet[ReviewTask]:
    """Open (waiting or held) tasks whose reason came from the knowledge check."""
    return ReviewTask.objects.exclude(status=ReviewTask.Status.DONE).filter(
        Q(route_reason__in=KNOWLEDGE_ROUTE_REASONS)
        # tasks opened before route_reason existed
        | Q(route_reason="", reason=ReviewTask.Reason.KNOWLEDGE_CONFLICT)
    )


class Checker:
    """`check(title, category_label, confidence, version) -> RouteDecision` under one snapshot."""

    def __init__(self, snapshot: KnowledgeSnapshot) -> None:
        self.snapshot = snapshot
        self._extractor_built: EntityExtractor | None = None
        self._thresholds: dict[tuple[int | None, bool], float] = {}

    @property
    def _extractor(self) -> EntityExtractor:
        # built on first use: a publish with no open knowledge task never pays for the gazetteer
        if self._extractor_built is None:
            self._extractor_built = EntityExtractor(self.snapshot)
        return self._extractor_built

    def threshold(self, version: ModelVersion | None, *, typed: bool = True) -> float:
        """The threshold a prediction of `version` is routed at; ``typed=False``: its title names no
        product type (the model's untyped threshold applies when higher)."""
        key = (getattr(version, "pk", None), typed)
        if key not in self._thresholds:
            untyped = None if typed else untyped_threshold_for(version)
            self._thresholds[key] = title_threshold(threshold_for(version), untyped, names_type=typed)
        return self._thresholds[key]

    def findings(self, title: str, label: str | None) -> list[dict[str, object]]:
        if not label:
            return [
                {
                    "code": "unknown_category",
                    "message": "the predicted category is no longer in the knowledge graph",
                    "severity": "conflict",
                }
            ]
        return [dict(f) for f in verify(self.snapshot, label, self._extractor.extract(title or ""))]

    def check(
        self,
        *,
        title: str,
        label: str | None,
        confidence: float,
        version: ModelVersion | None,
        model_findings: Sequence[Mapping[str, object]] = (),
    ) -> RouteDecision:
        """Route again under this snapshot: the graph's findings are new, `model_findings` (what the
        model said of itself when it predicted, e.g. a leaf it never trained on) are kept."""
        findings = [*self.findings(title, label), *model_findings]
        typed = names_type(self._extractor.extract(title or ""))
        return route(confidence=confidence, threshold=self.threshold(version, typed=typed), findings=findings)

    def check_task(self, task: ReviewTask, labels: dict[int, str]) -> tuple[str | None, RouteDecision]:
        """A task's prediction checked again: (its category's label in the snapshot, the decision)."""
        prediction = task.prediction
        label = labels.get(prediction.category_id) if prediction.category_id else None
        decision = self.check(
            title=task.listing.title,
            label=label,
            confidence=prediction.confidence,
            version=prediction.model_version,
            model_findings=[
                f for f in prediction.knowledge_findings or [] if isinstance(f, dict) and from_the_model(f)
            ],
        )
        return label, decision


def labels_for(snapshot_row_ids: RowIds | None) -> dict[int, str]:
    """Category pk -> label in the snapshot (the published row ids, else the live tables)."""
    if snapshot_row_ids and snapshot_row_ids.get("categories"):
        return {int(pk): label for label, pk in snapshot_row_ids["categories"].items()}
    return category_path_labels(active_only=True)


def reroute_plan(
    *,
    snapshot: KnowledgeSnapshot,
    row_ids: RowIds | None = None,
    new_conflict_window_days: int = 7,
    new_conflict_limit: int = 2000,
    max_examples: int = 25,
    with_new_conflicts: bool = True,
) -> ReroutePlan:
    """Check every open knowledge-routed task (and recent items) against `snapshot`.

    Args:
        snapshot: the candidate (preview: built from the tables) or the published version.
        row_ids: the version's label -> row id map; None reads the labels from the live tables.
        new_conflict_window_days, new_conflict_limit: which recent auto-accepted predictions and
            open low-confidence tasks are checked for conflicts the snapshot would create.
    """
    labels = labels_for(row_ids)
    checker = Checker(snapshot)
    plan = ReroutePlan()
    tasks = (
        knowledge_routed_open_tasks()
        .select_related("prediction__model_version", "listing")
        .order_by("id")
        .iterator(chunk_size=500)
    )
    for task in tasks:
        plan.checked += 1
        label, decision = checker.check_task(task, labels)
        if not decision.needs_review:
            plan.resolve.append(task.pk)
            if task.status == ReviewTask.Status.CLAIMED:
                plan.resolve_held.append(task.pk)
            if len(plan.examples) < max_examples:
                plan.examples.append(
                    {"task_id": task.pk, "title": task.listing.title, "category": label, "effect": "resolved"}
                )
        elif decision.primary not in KNOWLEDGE_ROUTE_REASONS:
            plan.conflict_gone_still_routed.append(task.pk)
        else:
            plan.still_conflicting.append(task.pk)
    if not with_new_conflicts:
        return plan
    # New conflicts: waiting low-confidence tasks and recent auto-accepted predictions.
    since = timezone.now() - timedelta(days=new_conflict_window_days)
    candidates = (
        Prediction.objects.filter(is_shadow=False, created_at__gte=since)
        .filter(
            Q(listing__status=Listing.Status.ACCEPTED)
            | Q(review_tasks__status__in=[ReviewTask.Status.PENDING, ReviewTask.Status.CLAIMED])
            & ~Q(review_tasks__route_reason__in=KNOWLEDGE_ROUTE_REASONS)
        )
        .select_related("listing", "model_version")
        .distinct()
        .order_by("-created_at")[:new_conflict_limit]
    )
    for prediction in candidates:
        label = labels.get(prediction.category_id) if prediction.category_id else None
        findings = checker.findings(prediction.listing.title, label)
        conflicts = [f for f in findings if str(f.get("severity")) == "conflict"]
        if conflicts and not _had_conflict(prediction):
            plan.new_conflicts.append(
                {
                    "listing_id": prediction.listing_id,
                    "prediction_id": prediction.pk,
                    "title": prediction.listing.title,
                    "category": label or prediction.category_label,
                    "status": prediction.listing.get_status_display(),
                    "findings": [f["message"] for f in conflicts],
                }
            )
    return plan


def _had_conflict(prediction: Prediction) -> bool:
    """Did the graph already object when the model predicted (the model's own findings do not count)?"""
    return any(
        str(f.get("severity", "")).lower() == "conflict" and not from_the_model(f)
        for f in prediction.knowledge_findings or []
    )
