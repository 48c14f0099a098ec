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
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from classifier.audit import AuditEvent, audit_record
from classifier.listings.models import Listing, Prediction
from classifier.review.models import ReviewDecision, ReviewTask
from classifier.review.selectors import COUNTS_CACHE_KEY, TASK_PAGE_RELATED, by_pk, review_reason_filter

log = logging.getLogger(__name__)
Status = ReviewTask.Status
Reason = ReviewTask.Reason
Action = ReviewDecision.Action


# Priority weights. Uncertainty (1 - confidence) is in [0, 1]; a knowledge conflict is worth about
# half a confidence band more, an escalation jumps ahead of ordinary work. Age is handled by the
# SLA rule in `review_claim_next` (overdue first, then FIFO among equal priorities).
PRIORITY_CONFLICT_BONUS = 0.5
PRIORITY_ESCALATED_BONUS = 1.0
SKIP_PRIORITY_PENALTY = 0.05


# A skipped (or escalated) task is not handed back to the same auditor for this long.
SKIP_EXCLUDE_SECONDS = getattr(settings, "REVIEW_SKIP_EXCLUDE_SECONDS", 30 * 60)
UNDO_WINDOW_SECONDS = getattr(settings, "REVIEW_UNDO_WINDOW_SECONDS", 10 * 60)


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


def _commit_claim_without_waiting_for_disk() -> None:
    """A claim is soft state: should PostgreSQL crash before its WAL reaches the disk, the claim is
    gone and the item is simply back in the queue; nothing an auditor submitted is lost (decisions
    still wait for the flush). Not waiting takes a disk flush off every "next"."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")


def _claim_row(task: ReviewTask, *, auditor: User, now: datetime, why: str) -> ReviewTask:
    _commit_claim_without_waiting_for_disk()
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


def _held_or_release_expired(*, auditor: User, now: datetime) -> ReviewTask | None:
    """The unexpired claim `auditor` holds, if any; otherwise expired claims go back to the queue."""
    # One look at the (few) claimed rows answers both questions: does this auditor still hold one
    # (theirs first), and has any claim expired? Written in SQL: composing it through the ORM (a
    # boolean annotation to order by) cost more CPU than PostgreSQL takes to answer it.
    with connection.cursor() as cursor:
        cursor.execute(
            f'SELECT "id", coalesce("claimed_by_id" = %s AND "claim_expires_at" > %s, false) AS "held"'
            f' FROM "{ReviewTask._meta.db_table}" WHERE "status" = %s'
            ' AND (("claimed_by_id" = %s AND "claim_expires_at" > %s) OR "claim_expires_at" < %s)'
            ' ORDER BY "held" DESC, "claim_expires_at" ASC LIMIT 1',
            [auditor.pk, now, Status.CLAIMED, auditor.pk, now, now],
        )
        first = cursor.fetchone()
    if first is not None and first[1]:
        held = by_pk(ReviewTask.objects.select_related(*TASK_PAGE_RELATED).filter(pk=first[0]))
        if held is not None:
            return held
    # Expired claims are claimable again right now, not only when the periodic task runs.
    if first is not None:
        review_release_expired(now=now, limit=100)
    return None


def review_claim_next(
    *,
    auditor: User,
    reason: str | None = None,
    category_id: int | None = None,
    now: datetime | None = None,
    after_decision: bool = False,
) -> ReviewTask | None:
    """Hand the next task to `auditor` (exactly one auditor per task), or None when the queue is empty.

    An auditor who still holds an unexpired claim gets that task back. Overdue tasks (older than
    REVIEW_SLA_HOURS) come first, oldest first; then the highest priority, oldest first.
    `after_decision`: the auditor just decided the one claim they held (an auditor holds one at a
    time), so the look for a held or expired claim is skipped; expired claims are freed by the
    periodic release and by the next plain "next".
    """
    now = now or timezone.now()
    if not after_decision:
        held = _held_or_release_expired(auditor=auditor, now=now)
        if held is not None:
            return held

    pending = ReviewTask.objects.filter(status=Status.PENDING)
    if reason:
        pending = pending.filter(**review_reason_filter(reason))
    if category_id:
        pending = pending.filter(category_id=category_id)
    excluded = review_skip_excluded_ids(auditor_id=auditor.pk, now=now)
    if excluded:
        pending = pending.exclude(id__in=excluded)
    sla_cutoff = now - timedelta(hours=settings.REVIEW_SLA_HOURS)
    # The listing and prediction come in the same query (only the task row is locked): the item page
    # that shows the claimed task then reads nothing more of them.
    pending = pending.select_related(*TASK_PAGE_RELATED).select_for_update(skip_locked=True, of=("self",))
    with transaction.atomic():
        # Two ordered index scans with LIMIT 1 (partial indexes over pending rows) instead of one
        # ORDER BY on a computed expression, which would sort the whole queue on every claim.
        task = pending.filter(created_at__lt=sla_cutoff).order_by("created_at").first()
        if task is None:
            task = pending.order_by("-priority", "created_at").first()
        if task is None:
            return None
        return _claim_row(task, auditor=auditor, now=now, why="next")


def review_claim_task(*, auditor: User, task_id: int, now: datetime | None = None) -> ReviewTask:
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
        expires = task.claim_expires_at
        if task.status == Status.CLAIMED and task.claimed_by_id == auditor.pk and expires and expires > now:
            return task
        if task.status == Status.CLAIMED and task.claim_expires_at and task.claim_expires_at > now:
            raise ClaimLost(f"This item is being reviewed by {task.claimed_by}.")
        # Hold one item at a time: the previous claim goes back to the queue.
        _release_claims_of(auditor=auditor, now=now, why="opened another item", except_id=task.pk)
        return _claim_row(task, auditor=auditor, now=now, why="open")


def _release_claims_of(*, auditor: User, now: datetime, why: str, except_id: int | None = None) -> None:
    claims = ReviewTask.objects.filter(status=Status.CLAIMED, claimed_by=auditor)
    if except_id is not None:
        claims = claims.exclude(pk=except_id)
    held = list(claims.values_list("id", flat=True))
    for pk in held:
        if ReviewTask.objects.filter(pk=pk, status=Status.CLAIMED, claimed_by=auditor).update(
            status=Status.PENDING, claimed_by=None, claim_expires_at=None, version=F("version") + 1
        ):
            audit_record(actor=auditor, verb="review.release", obj=ReviewTask(pk=pk), data={"why": why})


def review_release(*, auditor: User, task_id: int) -> bool:
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
