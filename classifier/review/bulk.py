"""Bulk approval: many tasks' predictions approved, each one re-checked."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from classifier.audit import audit_record
from classifier.listings.models import Listing
from classifier.review.models import ReviewDecision, ReviewTask
from classifier.review.services import InvalidDecision

Action = ReviewDecision.Action
Cause = ReviewDecision.Cause
Status = ReviewTask.Status


@dataclass
class BulkOutcome:
    approved: list[int] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)


def review_bulk_approve(
    *, auditor: User, task_ids: Iterable[int], cause: str = "", now: datetime | None = None
) -> BulkOutcome:
    """Approve the predictions of many tasks; each one is re-checked and skipped with a reason if it can't be."""
    now = now or timezone.now()
    if cause and cause not in Cause.values:
        raise InvalidDecision(f"Unknown cause “{cause}”.")
    outcome = BulkOutcome()
    ids = sorted({int(pk) for pk in task_ids})
    if len(ids) > 500:
        raise InvalidDecision("At most 500 items in one bulk approval.")
    for pk in ids:
        with transaction.atomic():
            task = (
                ReviewTask.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("prediction__category", "prediction__brand", "claimed_by")
                .filter(pk=pk)
                .first()
            )
            if task is None:
                exists = ReviewTask.objects.filter(pk=pk).exists()
                outcome.skipped.append(
                    (pk, "being opened by someone right now" if exists else "no such task")
                )
                continue
            if task.status == Status.DONE:
                outcome.skipped.append((pk, "already decided"))
                continue
            held_by_other = (
                task.status == Status.CLAIMED
                and task.claimed_by_id != auditor.pk
                and task.claim_expires_at
                and task.claim_expires_at > now
            )
            if held_by_other:
                outcome.skipped.append((pk, f"claimed by {task.claimed_by}"))
                continue
            category = task.prediction.category
            if category is None or not category.is_active:
                outcome.skipped.append((pk, "predicted category not active in the knowledge graph"))
                continue
            ReviewTask.objects.filter(pk=pk, version=task.version).update(
                status=Status.DONE,
                claimed_by=auditor,
                claim_expires_at=None,
                decided_at=now,
                version=F("version") + 1,
            )
            listing = Listing.objects.select_for_update().get(pk=task.listing_id)
            before = {
                "listing_status": listing.status,
                "final_category": listing.final_category_id,
                "final_brand": listing.final_brand_id,
            }
            decision = ReviewDecision.objects.create(
                task=task,
                listing=listing,
                auditor=auditor,
                action=Action.APPROVE,
                category=category,
                brand=task.prediction.brand,
                cause=cause,
                comment="bulk approval",
                is_training_example=True,
            )
            listing.final_category = category
            listing.final_brand = task.prediction.brand
            listing.status = Listing.Status.REVIEWED
            listing.save(update_fields=["final_category", "final_brand", "status", "updated_at"])
            audit_record(
                actor=auditor,
                verb="review.approve",
                obj=task,
                data={
                    "decision_id": decision.pk,
                    "bulk": True,
                    "category": category.path_label,
                    "brand": task.prediction.brand.name if task.prediction.brand else None,
                    "before": before,
                },
            )
            outcome.approved.append(pk)
    return outcome
