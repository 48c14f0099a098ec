"""Publish re-routes the queue: open review tasks that the knowledge check sent are checked again.

`reroute_plan` (a read) says, for a snapshot, which open knowledge-routed tasks would no longer
need a person, which would stay, and which open or recently auto-accepted items the snapshot would
newly hold back. The publish preview shows it; `knowledge_publish` stores the plan for the version
it publishes (`RerouteJob.planned_task_ids`) and a background job (`knowledge_reroute_run`) carries
it out with a progress line: each task that no longer conflicts is resolved, audited, with the
version that resolved it, and can be put back (`review_task_auto_resolve_undo`).

The same rule decides everywhere: `classifier.fusion.verification.verify` on the title's entities
(extracted with the snapshot's gazetteer), then `classifier.fusion.routing.route` at the
prediction's model version's review threshold.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from classifier.fusion.knowledge import KnowledgeSnapshot
from classifier.fusion.routing import RouteDecision, RouteReason, route

log = logging.getLogger(__name__)

KNOWLEDGE_ROUTE_REASONS = (RouteReason.KNOWLEDGE_CONFLICT.value, RouteReason.UNKNOWN_CATEGORY.value)
PROGRESS_EVERY = 25


def _classifier():
    from classifier.models import Listing, ModelVersion, Prediction, ReviewTask

    return Listing, ModelVersion, Prediction, ReviewTask


def threshold_for(version: Any) -> float:
    """The review threshold a prediction of `version` is routed at (the same as the pipeline's)."""
    if settings.REVIEW_THRESHOLD is not None:
        return float(settings.REVIEW_THRESHOLD)
    if version is not None and version.review_threshold is not None:
        return float(version.review_threshold)
    if version is not None:
        from classifier.services.training import artifact_review_threshold

        stored = artifact_review_threshold(version.artifact_dir)
        if stored is not None:
            return stored
    return 1.0  # unknown: everything stays with a person


def knowledge_routed_open_tasks():
    """Open (waiting or held) tasks whose reason came from the knowledge check."""
    _, _, _, ReviewTask = _classifier()
    return ReviewTask.objects.exclude(status=ReviewTask.Status.DONE).filter(
        Q(route_reason__in=KNOWLEDGE_ROUTE_REASONS)
        # tasks opened before route_reason existed
        | Q(route_reason="", reason=ReviewTask.Reason.KNOWLEDGE_CONFLICT)
    )


class Checker:
    """`check(title, category_label, confidence, version) -> RouteDecision` under one snapshot."""

    def __init__(self, snapshot: KnowledgeSnapshot) -> None:
        from classifier.fusion.verification import verify

        self.snapshot = snapshot
        self._extractor_built = None
        self._verify = verify
        self._thresholds: dict[int | None, float] = {}

    @property
    def _extractor(self):
        # built on first use: a publish with no open knowledge task never pays for the gazetteer
        if self._extractor_built is None:
            from classifier.fusion.text import EntityExtractor

            self._extractor_built = EntityExtractor(self.snapshot)
        return self._extractor_built

    def threshold(self, version: Any) -> float:
        key = getattr(version, "pk", None)
        if key not in self._thresholds:
            self._thresholds[key] = threshold_for(version)
        return self._thresholds[key]

    def findings(self, title: str, label: str | None) -> list[dict]:
        if not label:
            return [
                {
                    "code": "unknown_category",
                    "message": "the predicted category is no longer in the knowledge graph",
                    "severity": "conflict",
                }
            ]
        return self._verify(self.snapshot, label, self._extractor.extract(title or ""))

    def check(self, *, title: str, label: str | None, confidence: float, version: Any) -> RouteDecision:
        return route(
            confidence=confidence, threshold=self.threshold(version), findings=self.findings(title, label)
        )


@dataclass
class ReroutePlan:
    """What a snapshot would do to the queue (task ids, listing ids; counts are their lengths)."""

    checked: int = 0
    resolve: list[int] = field(default_factory=list)  # open knowledge tasks that would be resolved
    resolve_held: list[int] = field(default_factory=list)  # ...of which held by an auditor right now
    to_low_confidence: list[int] = field(default_factory=list)  # conflict gone, confidence still low
    still_conflicting: list[int] = field(default_factory=list)
    new_conflicts: list[dict[str, Any]] = field(default_factory=list)  # open/accepted items newly held
    examples: list[dict[str, Any]] = field(default_factory=list)


def _labels_for(snapshot_row_ids: dict | None) -> dict[int, str]:
    """Category pk -> label in the snapshot (the published row ids, else the live tables)."""
    if snapshot_row_ids and snapshot_row_ids.get("categories"):
        return {int(pk): label for label, pk in snapshot_row_ids["categories"].items()}
    from knowledge.selectors import category_path_labels

    return category_path_labels(active_only=True)


def reroute_plan(
    *,
    snapshot: KnowledgeSnapshot,
    row_ids: dict | None = None,
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
    Listing, _ModelVersion, Prediction, ReviewTask = _classifier()
    labels = _labels_for(row_ids)
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
        prediction = task.prediction
        label = labels.get(prediction.category_id) if prediction.category_id else None
        decision = checker.check(
            title=task.listing.title,
            label=label,
            confidence=prediction.confidence,
            version=prediction.model_version,
        )
        if not decision.needs_review:
            plan.resolve.append(task.pk)
            if task.status == ReviewTask.Status.CLAIMED:
                plan.resolve_held.append(task.pk)
            if len(plan.examples) < max_examples:
                plan.examples.append(
                    {"task_id": task.pk, "title": task.listing.title, "category": label, "effect": "resolved"}
                )
        elif decision.primary == RouteReason.LOW_CONFIDENCE.value:
            plan.to_low_confidence.append(task.pk)
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


def _had_conflict(prediction: Any) -> bool:
    return any(str(f.get("severity", "")).lower() == "conflict" for f in prediction.knowledge_findings or [])


# ---- the background job -------------------------------------------------------------------------


def reroute_job_create(*, version: Any, planned_task_ids: Iterable[int]) -> Any:
    """The job row for a published version (inside the publish transaction); idempotent."""
    from knowledge.models import RerouteJob

    job, _ = RerouteJob.objects.get_or_create(
        knowledge_version=version, defaults={"planned_task_ids": sorted(set(planned_task_ids))}
    )
    return job


def reroute_job_dispatch(job_id: int) -> None:
    """Queue the job once the publish has committed (in-process when there is no broker)."""

    from fusionreview.dispatch import task_dispatch
    from knowledge.tasks import knowledge_reroute

    # A failed send (broker down) is logged by the helper; the periodic sweep starts queued jobs.
    task_dispatch(knowledge_reroute, args=[job_id])


def knowledge_reroute_run(*, job_id: int, on_progress: Callable[[Any], None] | None = None) -> Any:
    """Carry out a re-route job: resolve each open knowledge-routed task that no longer conflicts.

    Idempotent: a job already done returns at once; a task already resolved, decided or claimed
    by an auditor meanwhile is left as it is (the auditor's decision wins).
    """
    from knowledge.models import KnowledgeVersion, RerouteJob

    claimed = RerouteJob.objects.filter(
        pk=job_id, status__in=[RerouteJob.Status.QUEUED, RerouteJob.Status.FAILED]
    ).update(status=RerouteJob.Status.RUNNING, error="")
    job = RerouteJob.objects.select_related("knowledge_version").filter(pk=job_id).first()
    if job is None:
        log.warning("re-route job %s does not exist; skipped", job_id)
        return None
    if not claimed:
        return job  # done, or another worker runs it
    try:
        version: KnowledgeVersion = job.knowledge_version
        newer = KnowledgeVersion.objects.filter(number__gt=version.number).exists()
        snapshot = KnowledgeSnapshot.from_dict(version.snapshot)
        labels = _labels_for(version.row_ids)
        checker = Checker(snapshot)
        task_ids = list(knowledge_routed_open_tasks().order_by("id").values_list("id", flat=True))
        RerouteJob.objects.filter(pk=job.pk).update(total=len(task_ids), checked=0)
        resolved: list[int] = list(job.resolved_task_ids or [])
        still = held = 0
        for index, task_id in enumerate(task_ids, start=1):
            if newer:
                break  # a newer version's job re-checks everything against the graph in force
            outcome = _reroute_one(task_id=task_id, checker=checker, labels=labels, version=version)
            if outcome == "resolved":
                resolved.append(task_id)
            elif outcome == "conflict":
                still += 1
            elif outcome == "held":
                held += 1
            if index % PROGRESS_EVERY == 0 or index == len(task_ids):
                RerouteJob.objects.filter(pk=job.pk).update(
                    checked=index, resolved_task_ids=resolved, still_conflicting=still, skipped_decided=held
                )
                if on_progress is not None:
                    on_progress(RerouteJob.objects.get(pk=job.pk))
        RerouteJob.objects.filter(pk=job.pk).update(
            status=RerouteJob.Status.DONE,
            checked=len(task_ids),
            resolved_task_ids=resolved,
            still_conflicting=still,
            skipped_decided=held,
            finished_at=timezone.now(),
        )
    except Exception as exc:
        log.exception("re-route job %s failed", job_id)
        RerouteJob.objects.filter(pk=job.pk).update(status=RerouteJob.Status.FAILED, error=str(exc)[:2000])
        raise
    job.refresh_from_db()
    return job


def _reroute_one(*, task_id: int, checker: Checker, labels: dict[int, str], version: Any) -> str:
    """Re-check one task; resolve it when nothing routes it any more. Returns what happened."""
    _Listing, _ModelVersion, _Prediction, ReviewTask = _classifier()
    from classifier.services.audit import audit_record

    with transaction.atomic():
        # Waiting tasks only, and never one an auditor is locking: their claim or decision wins.
        task = (
            ReviewTask.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("prediction__model_version", "listing")
            .filter(pk=task_id)
            .first()
        )
        if task is None or task.status == ReviewTask.Status.DONE:
            return "held"
        prediction = task.prediction
        label = labels.get(prediction.category_id) if prediction.category_id else None
        decision = checker.check(
            title=task.listing.title,
            label=label,
            confidence=prediction.confidence,
            version=prediction.model_version,
        )
        if decision.needs_review:
            if decision.primary != task.route_reason:
                # the conflict is gone but confidence is low: the task stays, for the right reason
                ReviewTask.objects.filter(pk=task.pk).update(route_reason=decision.primary)
            return "conflict" if decision.primary in KNOWLEDGE_ROUTE_REASONS else "low_confidence"
        if task.status != ReviewTask.Status.PENDING:
            return "held"  # an auditor holds it: theirs to decide
        now = timezone.now()
        updated = ReviewTask.objects.filter(
            pk=task.pk, status=ReviewTask.Status.PENDING, version=task.version
        ).update(
            status=ReviewTask.Status.DONE,
            decided_at=now,
            claimed_by=None,
            claim_expires_at=None,
            resolved_by_knowledge_version=version.number,
            version=F("version") + 1,
        )
        if not updated:
            return "held"
        listing = task.listing
        before = {
            "listing_status": listing.status,
            "final_category": listing.final_category_id,
            "final_brand": listing.final_brand_id,
            "route_reason": task.route_reason,
        }
        listing.status = listing.Status.ACCEPTED
        listing.final_category_id = prediction.category_id
        listing.final_brand_id = prediction.brand_id
        listing.save(update_fields=["status", "final_category", "final_brand", "updated_at"])
        audit_record(
            actor=None,
            verb="review.auto_resolve",
            obj=task,
            data={
                "knowledge_version": version.number,
                "prediction": prediction.pk,
                "category": label,
                "confidence": prediction.confidence,
                "before": before,
            },
        )
    return "resolved"


def review_task_auto_resolve_undo(*, task_id: int, actor: Any) -> Any:
    """Put an auto-resolved task back in the queue (as it was before the publish resolved it).

    Refused (ValueError with a message) when the task was not resolved by a publish, or the
    listing changed since (a person decided it, or it has another open task).
    """
    from classifier.models import AuditEvent
    from classifier.services.audit import audit_record

    Listing, _ModelVersion, _Prediction, ReviewTask = _classifier()
    with transaction.atomic():
        task = ReviewTask.objects.select_for_update().select_related("listing").filter(pk=task_id).first()
        if (
            task is None
            or task.resolved_by_knowledge_version is None
            or task.status != ReviewTask.Status.DONE
        ):
            raise ValueError("This task was not resolved by a knowledge publish; nothing to undo.")
        listing = Listing.objects.select_for_update().get(pk=task.listing_id)
        if listing.status != Listing.Status.ACCEPTED:
            raise ValueError("The listing changed since the publish resolved it; nothing was undone.")
        if ReviewTask.objects.filter(listing_id=listing.pk).exclude(status=ReviewTask.Status.DONE).exists():
            raise ValueError("The listing is already back in the queue.")
        event = (
            AuditEvent.objects.filter(
                verb="review.auto_resolve", object_type="classifier.reviewtask", object_id=str(task.pk)
            )
            .order_by("-created_at")
            .first()
        )
        before = (event.data or {}).get("before", {}) if event else {}
        version_number = task.resolved_by_knowledge_version
        ReviewTask.objects.filter(pk=task.pk).update(
            status=ReviewTask.Status.PENDING,
            decided_at=None,
            resolved_by_knowledge_version=None,
            route_reason=before.get("route_reason", task.route_reason),
            version=F("version") + 1,
        )
        listing.status = Listing.Status.IN_REVIEW
        listing.final_category_id = before.get("final_category")
        listing.final_brand_id = before.get("final_brand")
        listing.save(update_fields=["status", "final_category", "final_brand", "updated_at"])
        audit_record(
            actor=actor,
            verb="review.auto_resolve_undo",
            obj=task,
            data={"knowledge_version": version_number},
        )
    task.refresh_from_db()
    return task


def reroute_undo_version(*, number: int, actor: Any) -> dict[str, int]:
    """Put back every task a version's publish resolved that can still be put back."""
    _, _, _, ReviewTask = _classifier()
    undone = refused = 0
    for task_id in ReviewTask.objects.filter(resolved_by_knowledge_version=number).values_list(
        "id", flat=True
    ):
        try:
            review_task_auto_resolve_undo(task_id=task_id, actor=actor)
            undone += 1
        except ValueError:
            refused += 1
    return {"undone": undone, "refused": refused}


def reroute_sweep() -> list[int]:
    """Start re-route jobs that never ran (broker down at publish time). For the beat schedule."""
    from knowledge.models import RerouteJob

    started = []
    for job_id in RerouteJob.objects.filter(status=RerouteJob.Status.QUEUED).values_list("id", flat=True):
        knowledge_reroute_run(job_id=job_id)
        started.append(job_id)
    return started
