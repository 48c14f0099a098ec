"""Review decisions: approve, correct, skip, escalate (version-guarded) and undo."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from classifier.audit import AuditEvent, audit_record
from classifier.listings.models import Listing
from classifier.review.models import ReviewDecision, ReviewTask
from classifier.review.selectors import by_pk
from classifier.review.services import (
    PRIORITY_ESCALATED_BONUS,
    SKIP_PRIORITY_PENALTY,
    UNDO_WINDOW_SECONDS,
    AlreadyRecorded,
    ClaimLost,
    InvalidDecision,
    ReviewError,
    UnknownBrand,
    _claim_ttl,
    _release_claims_of,
    _skip_exclusion_set,
)
from knowledge.graph.brands import relation_support_record
from knowledge.graph.selectors import brand_by_folded_name, brand_by_name
from knowledge.models import Brand, Category
from knowledge.suggestions.services import suggestion_brand_gap_record

Action = ReviewDecision.Action
Reason = ReviewTask.Reason
Status = ReviewTask.Status

Cause = ReviewDecision.Cause


# What review_decide leaves unread: the prediction's payload, and of the listing all but its label.
PREDICTION_PAYLOAD = (
    "prediction__top_k",
    "prediction__entities",
    "prediction__knowledge_findings",
    "prediction__review_reasons",
    "prediction__attention_map",
)
LISTING_DECIDED_FIELDS = ("id", "title", "status", "final_category", "final_brand", "updated_at")


def _validate_category(category_id: int | str | None) -> Category:
    try:
        if category_id is None:
            raise ValueError("no category")
        pk = int(category_id)
    except (TypeError, ValueError):
        raise InvalidDecision("Pick a category from the search list before saving a correction.") from None
    category = Category.objects.filter(pk=pk).first()
    if category is None:
        raise InvalidDecision("That category no longer exists (it was deleted meanwhile); search again.")
    if not category.is_active:
        raise InvalidDecision(
            f"The category “{category.path_label}” was deactivated meanwhile; search again."
        )
    if category.children.filter(is_active=True).exists():
        raise InvalidDecision(f"“{category.path_label}” is not a leaf category; pick an article type.")
    node = category.parent
    while node is not None:
        if not node.is_active:
            raise InvalidDecision(f"“{category.path_label}” sits under a deactivated category; search again.")
        node = node.parent
    return category


def _validate_brand(brand_name: str, *, unresolved_ok: bool = False) -> Brand | None:
    brand_name = (brand_name or "").strip()
    if not brand_name:
        return None
    if len(brand_name) > 200:
        raise InvalidDecision("The brand name is too long (200 characters at most).")
    brand = brand_by_name(brand_name)
    if brand is None:
        brand = brand_by_folded_name(brand_name)  # "Lakmé" is the graph's "Lakme"
    if brand is None and not unresolved_ok:
        raise UnknownBrand(
            f"Unknown brand “{brand_name}”: it is not in the knowledge graph yet. Send the correction "
            "with the brand unresolved (ops get a suggestion to add it), or add the brand.",
            brand_name=brand_name,
        )
    return brand


@dataclass
class DecisionOutcome:
    decision: ReviewDecision
    task: ReviewTask


def _explain_lost_claim(*, task: ReviewTask, auditor: User, action: str) -> ReviewError:
    last = task.decisions.order_by("-created_at", "-id").first()
    if last is not None and last.auditor_id == auditor.pk and last.action == action:
        return AlreadyRecorded(
            f"Your “{last.get_action_display()}” on this item was already recorded; nothing changed."
        )
    if task.status == Status.DONE:
        who = last.auditor if last else "someone"
        return ClaimLost(f"This item was already decided by {who}; your decision was not saved.")
    if task.status == Status.CLAIMED and task.claimed_by_id != auditor.pk:
        return ClaimLost(
            f"Your claim expired and {task.claimed_by} took this item; your decision was not saved."
        )
    if task.status == Status.PENDING:
        return ClaimLost(
            "Your claim expired and the item went back to the queue; your decision was not saved."
        )
    return ClaimLost("This item changed since you opened it; reload it before deciding.")


def review_decide(
    *,
    auditor: User,
    task_id: int,
    version: int,
    action: str,
    category_id: int | str | None = None,
    brand_name: str = "",
    cause: str = "",
    comment: str = "",
    brand_unresolved: bool = False,
    now: datetime | None = None,
) -> DecisionOutcome:
    """Approve, correct, skip or escalate a task the auditor holds at `version`.

    A correction naming a brand the graph does not know raises `UnknownBrand`; with
    `brand_unresolved` it is saved without a brand and the name becomes an ops suggestion.
    Approvals and corrections add to the support of the brand -> category relation they confirm.

    Raises ReviewError (ClaimLost, AlreadyRecorded, InvalidDecision) with a message for the auditor;
    in every error case nothing is written.
    """
    now = now or timezone.now()
    if action not in (Action.APPROVE, Action.CORRECT, Action.SKIP, Action.ESCALATE):
        raise InvalidDecision(f"Unknown action “{action}”.")
    if cause and cause not in Cause.values:
        raise InvalidDecision(f"Unknown cause “{cause}”.")
    comment = (comment or "").strip()
    if len(comment) > 2000:
        raise InvalidDecision("The comment is too long (2,000 characters at most).")
    try:
        version = int(version)
    except (TypeError, ValueError):
        raise InvalidDecision("The form is missing the task version; reload the item.") from None

    # The predicted category with its ancestors and the brand in the same query: approve reads
    # category.path_label (a parent walk) for the audit record, which otherwise costs a query per level.
    # Not the prediction's JSON payload (top-k, entities, findings) nor the listing: a decision reads
    # neither, and decoding them was a good part of this query's cost.
    task = by_pk(
        ReviewTask.objects.select_related("prediction__category__parent__parent__parent", "prediction__brand")
        .defer(*PREDICTION_PAYLOAD)
        .filter(pk=task_id)
    )
    if task is None:
        raise InvalidDecision("That review task does not exist.")

    category: Category | None = None
    brand: Brand | None = None
    unresolved_brand = ""
    if action == Action.APPROVE:
        category = task.prediction.category
        brand = task.prediction.brand
        if category is None:
            raise InvalidDecision(
                "The predicted category is not in the knowledge graph; use Correct instead."
            )
        if not category.is_active:
            raise InvalidDecision(
                f"The predicted category “{category.path_label}” was deactivated; use Correct."
            )
    elif action == Action.CORRECT:
        category = _validate_category(category_id)
        brand = _validate_brand(brand_name, unresolved_ok=brand_unresolved)
        if brand is None and (brand_name or "").strip():
            unresolved_brand = brand_name.strip()
        cause = cause or Cause.MODEL_ERROR
    elif action == Action.ESCALATE and not comment:
        raise InvalidDecision("Say why you escalate (a short comment).")

    with transaction.atomic():
        task_changes: dict[str, Any] = {"version": F("version") + 1}
        if action in (Action.APPROVE, Action.CORRECT):
            task_changes.update(status=Status.DONE, decided_at=now, claim_expires_at=None)
        elif action == Action.SKIP:
            task_changes.update(
                status=Status.PENDING,
                claimed_by=None,
                claim_expires_at=None,
                priority=F("priority") - SKIP_PRIORITY_PENALTY,
            )
        else:  # escalate
            task_changes.update(
                status=Status.PENDING,
                claimed_by=None,
                claim_expires_at=None,
                reason=Reason.ESCALATED,
                reason_detail=comment,
                priority=F("priority") + PRIORITY_ESCALATED_BONUS,
            )
        # The guard: only the holder of the claim, at the version they saw, can decide.
        updated = ReviewTask.objects.filter(
            pk=task.pk, status=Status.CLAIMED, claimed_by=auditor, version=version
        ).update(**task_changes)
        if not updated:
            task.refresh_from_db()
            raise _explain_lost_claim(task=task, auditor=auditor, action=action)

        listing = Listing.objects.select_for_update().only(*LISTING_DECIDED_FIELDS).get(pk=task.listing_id)
        before = {
            "listing_status": listing.status,
            "final_category": listing.final_category_id,
            "final_brand": listing.final_brand_id,
            "task_reason": task.reason,
            "task_reason_detail": task.reason_detail,
            "task_priority": task.priority,
        }
        decision = ReviewDecision.objects.create(
            task=task,
            listing=listing,
            auditor=auditor,
            action=action,
            category=category,
            brand=brand,
            cause=cause or "",
            comment=comment,
            is_training_example=action in (Action.APPROVE, Action.CORRECT),
        )
        if action in (Action.APPROVE, Action.CORRECT):
            listing.final_category = category
            listing.final_brand = brand
            listing.status = Listing.Status.REVIEWED
            listing.save(update_fields=["final_category", "final_brand", "status", "updated_at"])

            if brand is not None and category is not None:
                relation_support_record(brand_id=brand.pk, category_id=category.pk, delta=1)
            if unresolved_brand:
                suggestion_brand_gap_record(name=unresolved_brand, listing_id=listing.pk)
        audit_record(
            actor=auditor,
            verb=f"review.{action}",
            obj=task,
            data={
                "decision_id": decision.pk,
                "version": version,
                "category": category.path_label if category else None,
                "brand": brand.name if brand else None,
                "cause": decision.cause,
                "comment": comment[:200],
                "unresolved_brand": unresolved_brand[:200] or None,
                "before": before,
            },
        )
    if action in (Action.SKIP, Action.ESCALATE):
        _skip_exclusion_set(auditor_id=auditor.pk, task_id=task.pk, add=True, now=now)
        task.refresh_from_db()  # priority (and reason) moved in SQL
    else:
        # The guarded UPDATE matched this version, so the row is exactly this (no query to re-read it).
        task.status, task.decided_at, task.claim_expires_at = Status.DONE, now, None
        task.version = version + 1
    return DecisionOutcome(decision=decision, task=task)


def review_undo_last(*, auditor: User, now: datetime | None = None) -> DecisionOutcome:
    """Undo the auditor's most recent decision (within the undo window) and re-claim its task for them."""
    now = now or timezone.now()
    last = ReviewDecision.objects.filter(auditor=auditor).order_by("-created_at", "-id").first()
    if last is None or last.action == Action.UNDO:
        raise InvalidDecision("Nothing to undo: your last decision was already undone (or you have none).")
    if hasattr(last, "undone_by"):
        raise InvalidDecision("That decision was already undone.")
    if now - last.created_at > timedelta(seconds=UNDO_WINDOW_SECONDS):
        raise InvalidDecision(
            f"Your last decision is older than {UNDO_WINDOW_SECONDS // 60} minutes and can no longer be undone."
        )
    if (
        ReviewDecision.objects.filter(task_id=last.task_id, created_at__gt=last.created_at)
        .exclude(auditor=auditor)
        .exists()
    ):
        raise InvalidDecision("Someone else has acted on that item since; it can no longer be undone.")
    event = (
        AuditEvent.objects.filter(
            object_type=ReviewTask._meta.label_lower, object_id=str(last.task_id), data__decision_id=last.pk
        )
        .order_by("-created_at")
        .first()
    )
    before = (event.data or {}).get("before", {}) if event else {}

    try:
        with transaction.atomic():
            # Hold one item at a time: whatever "next" handed out after the decision goes back.
            _release_claims_of(auditor=auditor, now=now, why="undo", except_id=last.task_id)
            reopen = {
                "status": Status.CLAIMED,
                "claimed_by": auditor,
                "claim_expires_at": now + _claim_ttl(),
                "decided_at": None,
                "version": F("version") + 1,
            }
            if last.action in (Action.APPROVE, Action.CORRECT):
                guard = Q(status=Status.DONE)
            else:
                # A skipped/escalated task is back in the queue: undo only if nobody picked it up.
                guard = Q(status=Status.PENDING) | Q(status=Status.CLAIMED, claimed_by=auditor)
                if "task_priority" in before:
                    reopen["priority"] = before["task_priority"]
                if last.action == Action.ESCALATE and before.get("task_reason"):
                    reopen["reason"] = before["task_reason"]
                    reopen["reason_detail"] = before.get("task_reason_detail", "")
            if not ReviewTask.objects.filter(guard, pk=last.task_id).update(**reopen):
                raise ClaimLost("Another auditor has picked that item up since; it can no longer be undone.")
            if last.action in (Action.APPROVE, Action.CORRECT):
                listing = Listing.objects.select_for_update().get(pk=last.listing_id)
                if listing.final_category_id != last.category_id:
                    raise InvalidDecision("The listing's label changed since; it can no longer be undone.")
                listing.final_category_id = before.get("final_category")
                listing.final_brand_id = before.get("final_brand")
                listing.status = before.get("listing_status") or Listing.Status.IN_REVIEW
                listing.save(update_fields=["final_category", "final_brand", "status", "updated_at"])
            ReviewDecision.objects.filter(pk=last.pk).update(is_training_example=False)
            if last.action in (Action.APPROVE, Action.CORRECT) and last.brand_id and last.category_id:
                relation_support_record(brand_id=last.brand_id, category_id=last.category_id, delta=-1)
            undo = ReviewDecision.objects.create(
                task_id=last.task_id,
                listing_id=last.listing_id,
                auditor=auditor,
                action=Action.UNDO,
                undoes=last,
            )
            task = ReviewTask.objects.get(pk=last.task_id)
            audit_record(
                actor=auditor,
                verb="review.undo",
                obj=task,
                data={"decision_id": undo.pk, "undoes": last.pk, "undone_action": last.action},
            )
    except IntegrityError:
        # one open task per listing: the listing was queued again meanwhile
        raise InvalidDecision(
            "The listing has a new open review task; this decision can no longer be undone."
        ) from None
    _skip_exclusion_set(auditor_id=auditor.pk, task_id=last.task_id, add=False, now=now)
    return DecisionOutcome(decision=undo, task=task)
