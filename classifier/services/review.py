"""Review queue writes: claiming, decisions, undo, bulk approval, releasing expired claims.

Concurrency rules (why the code looks the way it does):
- "claim next" picks a row with ``SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1`` inside a transaction,
  so two auditors pressing "next" at the same instant lock different rows and never share a task.
- every decision is a conditional UPDATE on (id, status=claimed, claimed_by=me, version=v): a claim
  that expired and was taken by someone else, or a form submitted twice, updates 0 rows and nothing
  is overwritten. ``ReviewTask.version`` goes up on every state change (claim, release, decision).
- decisions are never edited; an undo is a new ``ReviewDecision`` row with ``undoes=`` set (the only
  field of the undone row that changes is ``is_training_example``, which must stop feeding training).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from classifier.models import AuditEvent, Listing, Prediction, ReviewDecision, ReviewTask
from classifier.services.audit import audit_record
from knowledge.graph.selectors import brand_by_name
from knowledge.models import Brand, Category

log = logging.getLogger(__name__)

Status = ReviewTask.Status
Reason = ReviewTask.Reason
Action = ReviewDecision.Action
Cause = ReviewDecision.Cause

# Priority weights. Uncertainty (1 - confidence) is in [0, 1]; a knowledge conflict is worth about
# half a confidence band more, an escalation jumps ahead of ordinary work. Age is handled by the
# SLA rule in `review_claim_next` (overdue first, then FIFO among equal priorities).
PRIORITY_CONFLICT_BONUS = 0.5
PRIORITY_ESCALATED_BONUS = 1.0
SKIP_PRIORITY_PENALTY = 0.05
# A skipped (or escalated) task is not handed back to the same auditor for this long.
SKIP_EXCLUDE_SECONDS = getattr(settings, "REVIEW_SKIP_EXCLUDE_SECONDS", 30 * 60)
UNDO_WINDOW_SECONDS = getattr(settings, "REVIEW_UNDO_WINDOW_SECONDS", 10 * 60)
COUNTS_CACHE_KEY = "review:counts:v1"


class ReviewError(Exception):
    """A decision or claim that cannot be carried out; the message is shown to the auditor as is."""

    level = "error"


class ClaimLost(ReviewError):
    """The task is no longer held by this auditor (expired and released, or taken by someone else)."""


class AlreadyRecorded(ReviewError):
    """The same decision arrived twice (double submit): the second one changes nothing."""

    level = "info"


class InvalidDecision(ReviewError):
    """Bad input: unknown action, category or brand, missing comment..."""


class UnknownBrand(InvalidDecision):
    """The correction names a brand the graph does not know: nothing was written, and the auditor
    can send it with the brand unresolved (the gap goes to ops) or, with the edit-knowledge
    permission, add the brand."""

    def __init__(self, message: str, *, brand_name: str) -> None:
        super().__init__(message)
        self.brand_name = brand_name


# --- helpers -----------------------------------------------------------------------------------


def review_priority(*, confidence: float, reasons: Iterable[str]) -> float:
    """Queue priority of a new task: more uncertain and conflicting items first."""
    reasons = set(reasons)
    priority = 1.0 - max(0.0, min(1.0, float(confidence)))
    if Reason.KNOWLEDGE_CONFLICT in reasons:
        priority += PRIORITY_CONFLICT_BONUS
    if Reason.ESCALATED in reasons:
        priority += PRIORITY_ESCALATED_BONUS
    return round(priority, 6)


def _skip_key(user_id: int) -> str:
    return f"review:skipped:{user_id}"


def review_skip_excluded_ids(*, auditor_id: int, now: datetime | None = None) -> set[int]:
    """Tasks this auditor skipped recently (not handed back to them by "next")."""
    now_ts = (now or timezone.now()).timestamp()
    try:
        entries: dict[int, float] = cache.get(_skip_key(auditor_id)) or {}
    except Exception:  # the cache is a convenience; a lost exclusion list only re-serves a skipped item
        log.warning("review skip cache unreachable")
        return set()
    return {task_id for task_id, until in entries.items() if until > now_ts}


def _skip_exclusion_set(*, auditor_id: int, task_id: int, add: bool, now: datetime) -> None:
    key = _skip_key(auditor_id)
    try:
        entries: dict[int, float] = cache.get(key) or {}
        now_ts = now.timestamp()
        entries = {k: v for k, v in entries.items() if v > now_ts}
        if add:
            entries[task_id] = now_ts + SKIP_EXCLUDE_SECONDS
        else:
            entries.pop(task_id, None)
        cache.set(key, entries, timeout=SKIP_EXCLUDE_SECONDS)
    except Exception:
        log.warning("review skip cache unreachable")


def review_counts_invalidate() -> None:
    try:
        cache.delete(COUNTS_CACHE_KEY)
    except Exception:
        log.warning("review counts cache unreachable")


def _claim_ttl() -> timedelta:
    return timedelta(seconds=settings.CLAIM_TTL_SECONDS)


# --- opening tasks (used by the inference pipeline) ---------------------------------------------


def review_task_open(
    *, prediction: Prediction, reasons: Iterable[str], reason_detail: str = "", route_reason: str = ""
) -> ReviewTask:
    """Queue `prediction`'s listing for review (idempotent: an open task for the listing is returned).

    `route_reason` is the router's primary reason (`classifier.fusion.routing`), kept for the queue
    filter and for the re-check a knowledge publish runs on knowledge-routed tasks.
    """
    reasons = [r for r in reasons if r in Reason.values] or [Reason.LOW_CONFIDENCE]
    reason = Reason.KNOWLEDGE_CONFLICT if Reason.KNOWLEDGE_CONFLICT in reasons else reasons[0]
    existing = ReviewTask.objects.filter(listing_id=prediction.listing_id).exclude(status=Status.DONE).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            task = ReviewTask.objects.create(
                listing_id=prediction.listing_id,
                prediction=prediction,
                reason=reason,
                reason_detail=reason_detail,
                route_reason=route_reason or prediction.route_reason or "",
                priority=review_priority(confidence=prediction.confidence, reasons=reasons),
                category_id=prediction.category_id,
            )
    except IntegrityError:  # a concurrent delivery opened it first
        return ReviewTask.objects.filter(listing_id=prediction.listing_id).exclude(status=Status.DONE).get()
    Listing.objects.filter(pk=prediction.listing_id).update(status=Listing.Status.IN_REVIEW)
    return task


# --- claiming ---------------------------------------------------------------------------------


def review_release_expired(*, now: datetime | None = None, limit: int = 500) -> int:
    """Return claims whose time ran out to the queue. Safe to run concurrently (skips locked rows)."""
    now = now or timezone.now()
    with transaction.atomic():
        expired = list(
            ReviewTask.objects.select_for_update(skip_locked=True)
            .filter(status=Status.CLAIMED, claim_expires_at__lt=now)
            .order_by("claim_expires_at")
            .values_list("id", "claimed_by_id")[:limit]
        )
        if not expired:
            return 0
        ReviewTask.objects.filter(id__in=[pk for pk, _ in expired], status=Status.CLAIMED).update(
            status=Status.PENDING, claimed_by=None, claim_expires_at=None, version=F("version") + 1
        )
        AuditEvent.objects.bulk_create(
            [
                AuditEvent(
                    actor=None,
                    verb="review.release",
                    object_type=ReviewTask._meta.label_lower,
                    object_id=str(pk),
                    data={"why": "claim expired", "claimed_by": holder},
                )
                for pk, holder in expired
            ]
        )
    return len(expired)


def _claim_row(task: ReviewTask, *, auditor: Any, now: datetime, why: str) -> ReviewTask:
    ReviewTask.objects.filter(pk=task.pk).update(
        status=Status.CLAIMED,
        claimed_by=auditor,
        claim_expires_at=now + _claim_ttl(),
        version=F("version") + 1,
    )
    task.status = Status.CLAIMED
    task.claimed_by = auditor
    task.claim_expires_at = now + _claim_ttl()
    task.version += 1
    audit_record(actor=auditor, verb="review.claim", obj=task, data={"via": why})
    return task


def review_claim_next(
    *,
    auditor: Any,
    reason: str | None = None,
    category_id: int | None = None,
    now: datetime | None = None,
) -> ReviewTask | None:
    """Hand the next task to `auditor` (exactly one auditor per task), or None when the queue is empty.

    An auditor who still holds an unexpired claim gets that task back. Overdue tasks (older than
    REVIEW_SLA_HOURS) come first, oldest first; then the highest priority, oldest first.
    """
    now = now or timezone.now()
    # One look at the (few) claimed rows answers both questions: does this auditor still hold one
    # (theirs first), and has any claim expired?
    mine = Q(claimed_by=auditor, claim_expires_at__gt=now)
    first = (
        ReviewTask.objects.filter(mine | Q(claim_expires_at__lt=now), status=Status.CLAIMED)
        .annotate(held=mine)
        .order_by("-held", "claim_expires_at")
        .first()
    )
    if first is not None and first.held:
        return first
    # Expired claims are claimable again right now, not only when the periodic task runs.
    if first is not None:
        review_release_expired(now=now, limit=100)

    pending = ReviewTask.objects.filter(status=Status.PENDING)
    if reason:
        from classifier.selectors.review import review_reason_filter

        pending = pending.filter(**review_reason_filter(reason))
    if category_id:
        pending = pending.filter(category_id=category_id)
    excluded = review_skip_excluded_ids(auditor_id=auditor.pk, now=now)
    if excluded:
        pending = pending.exclude(id__in=excluded)
    sla_cutoff = now - timedelta(hours=settings.REVIEW_SLA_HOURS)
    with transaction.atomic():
        # Two ordered index scans with LIMIT 1 (partial indexes over pending rows) instead of one
        # ORDER BY on a computed expression, which would sort the whole queue on every claim.
        task = (
            pending.filter(created_at__lt=sla_cutoff)
            .order_by("created_at")
            .select_for_update(skip_locked=True, of=("self",))
            .first()
        )
        if task is None:
            task = (
                pending.order_by("-priority", "created_at")
                .select_for_update(skip_locked=True, of=("self",))
                .first()
            )
        if task is None:
            return None
        return _claim_row(task, auditor=auditor, now=now, why="next")


def review_claim_task(*, auditor: Any, task_id: int, now: datetime | None = None) -> ReviewTask:
    """Claim one particular task (opened from a queue list), if nobody else holds it."""
    now = now or timezone.now()
    with transaction.atomic():
        task = ReviewTask.objects.select_for_update(skip_locked=True).filter(pk=task_id).first()
        if task is None:
            if not ReviewTask.objects.filter(pk=task_id).exists():
                raise InvalidDecision("That review task does not exist.")
            raise ClaimLost("Another auditor is opening this item right now; pick another one.")
        if task.status == Status.DONE:
            raise ClaimLost("This item was already decided.")
        if task.status == Status.CLAIMED and task.claimed_by_id == auditor.pk and task.claim_expires_at > now:
            return task
        if task.status == Status.CLAIMED and task.claim_expires_at and task.claim_expires_at > now:
            raise ClaimLost(f"This item is being reviewed by {task.claimed_by}.")
        # Hold one item at a time: the previous claim goes back to the queue.
        _release_claims_of(auditor=auditor, now=now, why="opened another item", except_id=task.pk)
        return _claim_row(task, auditor=auditor, now=now, why="open")


def _release_claims_of(*, auditor: Any, now: datetime, why: str, except_id: int | None = None) -> None:
    held = list(
        ReviewTask.objects.filter(status=Status.CLAIMED, claimed_by=auditor)
        .exclude(pk=except_id)
        .values_list("id", flat=True)
    )
    for pk in held:
        if ReviewTask.objects.filter(pk=pk, status=Status.CLAIMED, claimed_by=auditor).update(
            status=Status.PENDING, claimed_by=None, claim_expires_at=None, version=F("version") + 1
        ):
            audit_record(actor=auditor, verb="review.release", obj=ReviewTask(pk=pk), data={"why": why})


def review_release(*, auditor: Any, task_id: int) -> bool:
    """The auditor gives the task back without deciding (leaving the page)."""
    with transaction.atomic():
        released = ReviewTask.objects.filter(pk=task_id, status=Status.CLAIMED, claimed_by=auditor).update(
            status=Status.PENDING, claimed_by=None, claim_expires_at=None, version=F("version") + 1
        )
        if released:
            audit_record(
                actor=auditor, verb="review.release", obj=ReviewTask(pk=task_id), data={"why": "released"}
            )
    return bool(released)


# --- decisions --------------------------------------------------------------------------------


def _validate_category(category_id: Any) -> Category:
    try:
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
        from knowledge.graph.selectors import brand_by_folded_name

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


def _explain_lost_claim(*, task: ReviewTask, auditor: Any, action: str) -> ReviewError:
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
    auditor: Any,
    task_id: int,
    version: int,
    action: str,
    category_id: Any = None,
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
    task = (
        ReviewTask.objects.select_related(
            "prediction__category__parent__parent__parent", "prediction__brand", "listing"
        )
        .filter(pk=task_id)
        .first()
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

        listing = Listing.objects.select_for_update().get(pk=task.listing_id)
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
            from knowledge.graph.brands import relation_support_record
            from knowledge.suggestions.services import suggestion_brand_gap_record

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


def review_undo_last(*, auditor: Any, now: datetime | None = None) -> DecisionOutcome:
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
                from knowledge.graph.brands import relation_support_record

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


# --- bulk -------------------------------------------------------------------------------------


@dataclass
class BulkOutcome:
    approved: list[int] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)


def review_bulk_approve(
    *, auditor: Any, task_ids: Iterable[int], cause: str = "", now: datetime | None = None
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
