"""Publish re-routes the queue: open review tasks that the knowledge check sent are checked again.

On `knowledge.signals.snapshot_published` (inside the publish transaction, see `wiring`) the plan
for the new version is stored (`RerouteJob.planned_task_ids`, what the preview promised) and a background job
(`knowledge_reroute_run`) carries it out with a progress line: each task that no longer conflicts
is resolved, audited, with the version that resolved it, and can be put back
(`review_task_auto_resolve_undo`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from classifier.audit import audit_record
from classifier.fusion.knowledge import KnowledgeSnapshot
from classifier.models import AuditEvent, Listing, ReviewTask
from classifier.reroute.checker import (
    KNOWLEDGE_ROUTE_REASONS,
    Checker,
    knowledge_routed_open_tasks,
    labels_for,
)
from knowledge.models import KnowledgeVersion, RerouteJob
from knowledge.ports import Actor

log = logging.getLogger(__name__)

PROGRESS_EVERY = 25


def reroute_job_create(*, version: KnowledgeVersion, planned_task_ids: Iterable[int]) -> RerouteJob:
    """The job row for a published version (inside the publish transaction); idempotent."""
    job, _ = RerouteJob.objects.get_or_create(
        knowledge_version=version, defaults={"planned_task_ids": sorted(set(planned_task_ids))}
    )
    return job


def knowledge_reroute_run(
    *, job_id: int, on_progress: Callable[[RerouteJob], None] | None = None
) -> RerouteJob | None:
    """Carry out a re-route job: resolve each open knowledge-routed task that no longer conflicts.

    Idempotent: a job already done returns at once; a task already resolved, decided or claimed
    by an auditor meanwhile is left as it is (the auditor's decision wins).
    """
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
        labels = labels_for(version.row_ids)
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


def _reroute_one(*, task_id: int, checker: Checker, labels: dict[int, str], version: KnowledgeVersion) -> str:
    """Re-check one task; resolve it when nothing routes it any more. Returns what happened."""
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
        label, decision = checker.check_task(task, labels)
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


def review_task_auto_resolve_undo(*, task_id: int, actor: Actor) -> ReviewTask:
    """Put an auto-resolved task back in the queue (as it was before the publish resolved it).

    Refused (ValueError with a message) when the task was not resolved by a publish, or the
    listing changed since (a person decided it, or it has another open task).
    """
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


def reroute_undo_version(*, number: int, actor: Actor) -> dict[str, int]:
    """Put back every task a version's publish resolved that can still be put back."""
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
    started = []
    for job_id in RerouteJob.objects.filter(status=RerouteJob.Status.QUEUED).values_list("id", flat=True):
        knowledge_reroute_run(job_id=job_id)
        started.append(job_id)
    return started
