"""Review queue reads: queue counts, the item page, similar listings, audit trail, stats, training examples."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar, cast

from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db.models import Count, Model, Q, QuerySet
from django.utils import timezone

from classifier.audit import AuditEvent
from classifier.listings.models import RouteReasonChoice
from classifier.review.models import ReviewDecision, ReviewTask
from knowledge.graph.selectors import category_path_labels

COUNTS_CACHE_KEY = "review:counts:v1"
log = logging.getLogger(__name__)
Status = ReviewTask.Status
Reason = ReviewTask.Reason
Action = ReviewDecision.Action
COUNTS_TTL_SECONDS = 15
# The queue page's counts: lists of {reason|category_id, label, n} and totals (template values).
QueueCounts = dict[str, object]
T = TypeVar("T")
M = TypeVar("M", bound=Model)


# Values this process read or computed lately: key -> (monotonic deadline, value). The item page reads
# the same few lists on every request; unpickling them from Redis each time was a tenth of its CPU.
_local_memo: dict[str, tuple[float, object]] = {}


def cached_compute(key: str, ttl: int, compute: Callable[[], T], *, local_ttl: float = 0) -> T:
    """`compute()`, kept in the cache for `ttl` seconds (computed directly while the cache is away).

    `local_ttl`: also keep it in this process that long (read-only values only: callers share it).
    A value can then be up to `ttl + local_ttl` old; with a key that changes with the data, never stale.
    """
    if local_ttl:
        held = _local_memo.get(key)
        if held is not None and held[0] > time.monotonic():
            return cast(T, held[1])
    try:
        value = cache.get(key)
    except Exception:
        log.warning("cache unreachable; computing %s", key)
        return compute()
    if value is None:
        value = compute()
        try:
            cache.set(key, value, timeout=ttl)
        except Exception:
            log.warning("cache unreachable; not storing %s", key)
    if local_ttl:
        if len(_local_memo) > 1000:  # keys that embed a version pile up; start over
            _local_memo.clear()
        _local_memo[key] = (time.monotonic() + local_ttl, value)
    return cast(T, value)


def cached_compute_forget() -> None:
    """Drop this process's copies (tests, after they delete the cache keys behind them)."""
    _local_memo.clear()


def review_sla_cutoff(now: datetime | None = None) -> datetime:
    return (now or timezone.now()) - timedelta(hours=settings.REVIEW_SLA_HOURS)


def review_queue_counts(
    *, fresh: bool = False, on_stale: Callable[[Callable[[], object]], None] | None = None
) -> QueueCounts:
    """Waiting tasks per reason and per category, overdue and claimed counts.

    One grouped COUNT per table scan of the pending partial indexes, cached for a few seconds
    (decisions invalidate it): the queue page never counts millions of rows per request.
    `on_stale`: when the cached counts are old, they are returned as they are and the refresh is
    handed to `on_stale` (the queue page runs it once its response is sent) instead of run here.
    """

    def compute() -> QueueCounts:
        # One scan of the pending rows, grouped by every key the page shows (at most a few hundred
        # groups), instead of one scan per breakdown: at 300k waiting tasks each scan costs ~0.3 s.
        by_reason = {r.value: 0 for r in Reason}
        per_category: dict[int | None, int] = {}
        by_route: dict[str, int] = {}
        overdue = 0
        groups = (
            ReviewTask.objects.filter(status=Status.PENDING)
            .annotate(late=Q(created_at__lt=review_sla_cutoff()))
            .values("reason", "route_reason", "category_id", "late")
            .annotate(n=Count("id"))
            .order_by()
        )
        for row in groups:
            n = row["n"]
            by_reason[row["reason"]] = by_reason.get(row["reason"], 0) + n
            per_category[row["category_id"]] = per_category.get(row["category_id"], 0) + n
            if row["route_reason"]:
                by_route[row["route_reason"]] = by_route.get(row["route_reason"], 0) + n
            if row["late"]:
                overdue += n
        by_category = [
            {"category_id": pk, "n": n}
            for pk, n in sorted(per_category.items(), key=lambda item: -item[1])[:40]
        ]
        labels = category_path_labels()
        claimed = ReviewTask.objects.filter(status=Status.CLAIMED).count()
        return {
            "by_reason": [{"reason": r.value, "label": r.label, "n": by_reason[r.value]} for r in Reason],
            # why the router sent them (the knowledge check or confidence); "route:<reason>" filters
            "by_route": [
                {"reason": ROUTE_FILTER_PREFIX + r.value, "label": r.label, "n": by_route.get(r.value, 0)}
                for r in RouteReasonChoice
                if r != RouteReasonChoice.AUTO_ACCEPTED
            ],
            "by_category": [
                {
                    "category_id": row["category_id"],
                    "label": labels.get(row["category_id"] or 0, "(no category)"),
                    "n": row["n"],
                }
                for row in by_category
            ],
            "pending": sum(by_reason.values()),
            "overdue": overdue,
            "claimed": claimed,
            "computed_at": timezone.now(),
        }

    if fresh:
        return compute()
    # Stale-while-revalidate: the value lives long in the cache; once it is older than the TTL, one
    # request (the one that wins `cache.add` on the lock) recomputes while the others keep serving the
    # previous counts. Decisions do not invalidate it, so 20 busy auditors never make every page count.
    try:
        value: QueueCounts | None = cache.get(COUNTS_CACHE_KEY)
    except Exception:
        log.warning("cache unreachable; counting the queue directly")
        return compute()

    def is_stale(counts: QueueCounts | None) -> bool:
        computed = counts.get("computed_at") if counts else None
        if not isinstance(computed, datetime):
            return True
        return (timezone.now() - computed).total_seconds() > COUNTS_TTL_SECONDS

    def refresh() -> QueueCounts | None:
        if not cache.add(COUNTS_CACHE_KEY + ":lock", 1, timeout=30):
            return None
        try:
            # A deferred refresh may run after another request already did it: count once.
            current: QueueCounts | None = cache.get(COUNTS_CACHE_KEY)
            if current is not None and not is_stale(current):
                return current
            counts = compute()
            cache.set(COUNTS_CACHE_KEY, counts, timeout=3600)
            return counts
        finally:
            cache.delete(COUNTS_CACHE_KEY + ":lock")

    if value is None:
        value = refresh() or compute()
    elif is_stale(value):
        if on_stale is not None:
            # The page shows the previous counts (with their time) and the count runs after the
            # response went out: at a million tasks it takes ~0.3 s, which no auditor should wait for.
            on_stale(refresh)
        else:
            value = refresh() or value
    return value


ROUTE_FILTER_PREFIX = "route:"


def review_reason_filter(reason: str) -> dict[str, str]:
    """The queue filter a `reason` parameter stands for: a task reason ("escalated"), or the
    router's reason when written "route:<reason>" ("route:unknown_category")."""
    if reason.startswith(ROUTE_FILTER_PREFIX):
        return {"route_reason": reason[len(ROUTE_FILTER_PREFIX) :]}
    return {"reason": reason}


def review_queue_tasks(
    *, reason: str | None = None, category_id: int | None = None, limit: int = 50
) -> list[ReviewTask]:
    """The head of a queue in serving order: overdue first (oldest first), then by priority.

    Only the columns the queue list shows: decoding each row's JSON columns (top-k, entities,
    findings, attributes) cost more than the query itself."""
    base = (
        ReviewTask.objects.filter(status=Status.PENDING)
        .select_related("listing", "prediction")
        .only(
            "id",
            "status",
            "reason",
            "priority",
            "category_id",
            "created_at",
            "listing__title",
            "prediction__category_label",
            "prediction__confidence",
        )
    )
    if reason:
        base = base.filter(**review_reason_filter(reason))
    if category_id:
        base = base.filter(category_id=category_id)
    cutoff = review_sla_cutoff()
    overdue = list(base.filter(created_at__lt=cutoff).order_by("created_at")[:limit])
    rest = []
    if len(overdue) < limit:
        rest = list(
            base.filter(created_at__gte=cutoff).order_by("-priority", "created_at")[: limit - len(overdue)]
        )
    tasks = overdue + rest
    for task in tasks:
        review_task_annotate_sla(task)
    return tasks


def review_task_annotate_sla(task: ReviewTask, now: datetime | None = None) -> ReviewTask:
    now = now or timezone.now()
    age = now - task.created_at
    sla = timedelta(hours=settings.REVIEW_SLA_HOURS)
    task.age_hours = age.total_seconds() / 3600
    task.is_overdue = age > sla
    task.sla_left_hours = (sla - age).total_seconds() / 3600
    return task


def by_pk(queryset: QuerySet[M]) -> M | None:
    """The row a primary-key filter matched, or None. Unlike `first()`, no ORDER BY to compile: with
    joined tables that ordering cost the ORM about as much as the rest of the query."""
    return next(iter(queryset.order_by()[:1]), None)


def review_task_get(*, task_id: int) -> ReviewTask | None:
    task = by_pk(
        ReviewTask.objects.select_related(
            "listing",
            "prediction",
            "prediction__category",
            "prediction__brand",
            "prediction__model_version",
            "claimed_by",
            "category",
        ).filter(pk=task_id)
    )
    return review_task_annotate_sla(task) if task else None


def review_task_for_page(*, task_id: int) -> ReviewTask | None:
    """The task as the item page shows it: listing, prediction, its brand and model version, one query.

    Fewer tables than `review_task_get`: PostgreSQL's join search grows quickly with each one (about
    5 ms of planning for eight at every item rendered). Who holds the claim is read only when the page
    names them (someone else's claim), the task's own category not at all.
    """
    task = by_pk(ReviewTask.objects.select_related(*TASK_PAGE_RELATED).filter(pk=task_id))
    return review_task_annotate_sla(task) if task else None


# What the item page reads beside the task; "claim next" loads the same rows with the task it locks.
TASK_PAGE_RELATED = ("listing", "prediction", "prediction__brand", "prediction__model_version")


def review_task_page_loaded(task: ReviewTask) -> bool:
    """True when `task` already holds everything the item page reads (no second query for it)."""
    if not (ReviewTask.listing.is_cached(task) and ReviewTask.prediction.is_cached(task)):
        return False
    prediction = task.prediction
    return type(prediction).brand.is_cached(prediction) and type(prediction).model_version.is_cached(
        prediction
    )


def review_task_held_by(*, auditor: User) -> ReviewTask | None:
    return (
        ReviewTask.objects.filter(
            status=Status.CLAIMED, claimed_by=auditor, claim_expires_at__gt=timezone.now()
        )
        .order_by("claim_expires_at")
        .first()
    )


def review_task_events(*, task_id: int, limit: int = 50) -> QuerySet[AuditEvent]:
    return (
        AuditEvent.objects.filter(object_type=ReviewTask._meta.label_lower, object_id=str(task_id))
        .select_related("actor")
        # the history shows who (the username), not the whole user row
        .only("created_at", "verb", "data", "object_type", "object_id", "actor__username")
        .order_by("-created_at", "-id")[:limit]
    )


def review_task_decisions(*, task_id: int) -> QuerySet[ReviewDecision]:
    return (
        ReviewDecision.objects.filter(task_id=task_id)
        .select_related("auditor", "category", "brand", "undoes")
        .order_by("-created_at", "-id")
    )


def review_bulk_candidates(
    *,
    category_id: int | None = None,
    min_confidence: float | None = None,
    reason: str | None = None,
    limit: int = 200,
) -> list[ReviewTask]:
    qs = ReviewTask.objects.filter(status=Status.PENDING).select_related("listing", "prediction")
    if category_id:
        qs = qs.filter(category_id=category_id)
    if reason:
        qs = qs.filter(reason=reason)
    if min_confidence is not None:
        qs = qs.filter(prediction__confidence__gte=min_confidence)
    return list(qs.order_by("-priority", "created_at")[:limit])


def review_audit_events(
    *,
    user_id: int | None = None,
    verb: str | None = None,
    date_from: datetime | None = None,
    date_to: datetime | None = None,
) -> QuerySet[AuditEvent]:
    qs = AuditEvent.objects.filter(verb__startswith="review.").select_related("actor")
    if user_id:
        qs = qs.filter(actor_id=user_id)
    if verb:
        qs = qs.filter(verb=verb)
    if date_from:
        qs = qs.filter(created_at__gte=date_from)
    if date_to:
        qs = qs.filter(created_at__lt=date_to)
    return qs.order_by("-created_at", "-id")


def review_task_list(
    *,
    status: str = "",
    reason: str = "",
    route_reason: str = "",
    category_id: int | None = None,
    claimed_by: User | None = None,
) -> QuerySet[ReviewTask]:
    """Tasks newest first, filtered; the queue's serving order is `claim next`'s business."""
    qs = ReviewTask.objects.select_related("listing", "prediction", "claimed_by").order_by(
        "-created_at", "-id"
    )
    if status:
        qs = qs.filter(status=status)
    if reason:
        qs = qs.filter(reason=reason)
    if route_reason:
        qs = qs.filter(route_reason=route_reason)
    if category_id:
        qs = qs.filter(category_id=category_id)
    if claimed_by is not None:
        qs = qs.filter(claimed_by=claimed_by, status=ReviewTask.Status.CLAIMED)
    return qs
