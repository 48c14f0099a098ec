"""Review queue reads: queue counts, the item page, similar listings, audit trail, stats, training examples."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, Exists, F, FloatField, OuterRef, Q, QuerySet
from django.db.models.functions import Cast, Floor, TruncHour
from django.utils import timezone

from classifier.models import AuditEvent, Listing, ReviewDecision, ReviewTask, RouteReasonChoice
from classifier.services.review import COUNTS_CACHE_KEY
from knowledge.graph.selectors import category_path_labels
from knowledge.models import Brand, BrandAlias, Category, CategoryAlias

log = logging.getLogger(__name__)

Status = ReviewTask.Status
Reason = ReviewTask.Reason
Action = ReviewDecision.Action

COUNTS_TTL_SECONDS = 15
CATEGORY_LABELS_KEY = "review:category-leaves:v1"
CATEGORY_LABELS_TTL = 60
SIMILAR_POOL_TTL = 300


def _cached(key: str, ttl: int, compute):
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
    return value


def review_sla_cutoff(now: datetime | None = None) -> datetime:
    return (now or timezone.now()) - timedelta(hours=settings.REVIEW_SLA_HOURS)


def review_queue_counts(
    *, fresh: bool = False, on_stale: Callable[[Callable[[], object]], None] | None = None
) -> dict[str, Any]:
    """Waiting tasks per reason and per category, overdue and claimed counts.

    One grouped COUNT per table scan of the pending partial indexes, cached for a few seconds
    (decisions invalidate it): the queue page never counts millions of rows per request.
    `on_stale`: when the cached counts are old, they are returned as they are and the refresh is
    handed to `on_stale` (the queue page runs it once its response is sent) instead of run here.
    """

    def compute() -> dict[str, Any]:
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
                    "label": labels.get(row["category_id"], "(no category)"),
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
        value = cache.get(COUNTS_CACHE_KEY)
    except Exception:
        log.warning("cache unreachable; counting the queue directly")
        return compute()

    def is_stale(counts: dict[str, Any] | None) -> bool:
        return counts is None or (timezone.now() - counts["computed_at"]).total_seconds() > COUNTS_TTL_SECONDS

    def refresh() -> dict[str, Any] | None:
        if not cache.add(COUNTS_CACHE_KEY + ":lock", 1, timeout=30):
            return None
        try:
            # A deferred refresh may run after another request already did it: count once.
            current = cache.get(COUNTS_CACHE_KEY)
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


def review_task_get(*, task_id: int) -> ReviewTask | None:
    task = (
        ReviewTask.objects.select_related(
            "listing",
            "prediction",
            "prediction__category",
            "prediction__brand",
            "prediction__model_version",
            "claimed_by",
            "category",
        )
        .filter(pk=task_id)
        .first()
    )
    return review_task_annotate_sla(task) if task else None


def review_task_for_page(*, task_id: int) -> ReviewTask | None:
    """The task as the item page shows it: listing, prediction, its brand and model version, one query.

    Fewer tables than `review_task_get`: PostgreSQL's join search grows quickly with each one (about
    5 ms of planning for eight at every item rendered). Who holds the claim is read only when the page
    names them (someone else's claim), the task's own category not at all.
    """
    task = (
        ReviewTask.objects.select_related(
            "listing", "prediction", "prediction__brand", "prediction__model_version"
        )
        .filter(pk=task_id)
        .first()
    )
    return review_task_annotate_sla(task) if task else None


def review_task_held_by(*, auditor: Any) -> ReviewTask | None:
    return (
        ReviewTask.objects.filter(
            status=Status.CLAIMED, claimed_by=auditor, claim_expires_at__gt=timezone.now()
        )
        .order_by("claim_expires_at")
        .first()
    )


# --- item page pieces ------------------------------------------------------------------------


@dataclass(frozen=True)
class TitleSegment:
    text: str
    entity_type: str = ""
    weight: float | None = None


_TYPE_RE = re.compile(r"[^a-z0-9_]")


def title_segments(title: str, entities: Any) -> list[TitleSegment]:
    """Split the title into plain and entity segments by char offsets; bad or overlapping spans are dropped.

    The template escapes every segment's text, so a title can never inject markup.
    """
    spans = []
    for ent in entities if isinstance(entities, list) else []:
        if not isinstance(ent, dict):
            continue
        try:
            start, end = int(ent.get("start")), int(ent.get("end"))
        except (TypeError, ValueError):
            continue
        if 0 <= start < end <= len(title):
            etype = _TYPE_RE.sub("", str(ent.get("type", "entity")).lower())[:20] or "entity"
            try:
                weight = float(ent.get("weight")) if ent.get("weight") is not None else None
            except (TypeError, ValueError):
                weight = None
            spans.append((start, end, etype, weight))
    spans.sort()
    segments: list[TitleSegment] = []
    pos = 0
    for start, end, etype, weight in spans:
        if start < pos:
            continue  # overlaps the previous span
        if start > pos:
            segments.append(TitleSegment(title[pos:start]))
        segments.append(TitleSegment(title[start:end], etype, weight))
        pos = end
    if pos < len(title):
        segments.append(TitleSegment(title[pos:]))
    return segments


LEVELS = (("master", "Master category"), ("sub", "Sub-category"), ("article", "Article type"))


def top_k_rows(top_k: Any) -> list[dict[str, Any]]:
    """[{level, label, options: [(name, pct)]}] from Prediction.top_k, tolerant of odd shapes."""
    rows = []
    top_k = top_k if isinstance(top_k, dict) else {}
    for key, label in LEVELS:
        options = []
        for item in top_k.get(key, [])[:5]:
            try:
                name, prob = item[0], float(item[1])
            except (TypeError, ValueError, IndexError, KeyError):
                continue
            options.append({"name": str(name), "pct": round(100 * prob, 1)})
        rows.append({"level": key, "label": label, "options": options})
    return rows


def findings_in_words(findings: Any) -> list[dict[str, str]]:
    out = []
    for f in findings if isinstance(findings, list) else []:
        if isinstance(f, dict):
            severity = str(f.get("severity", "info"))
            out.append(
                {
                    "code": str(f.get("code", "")),
                    "message": str(f.get("message") or f.get("code") or "finding"),
                    "severity": severity if severity in ("info", "warning", "error", "conflict") else "info",
                }
            )
    return out


_TOKEN_RE = re.compile(r"[\w]+", re.UNICODE)


def _tokens(text: str) -> set[str]:
    tokens = set()
    for tok in _TOKEN_RE.findall(text.lower()):
        if len(tok) > 1 or not tok.isascii():
            tokens.add(tok)
    # CJK titles have no spaces: character bigrams stand in for words.
    for run in re.findall(r"[\u3400-\u9fff]+", text):
        tokens.update(run[i : i + 2] for i in range(len(run) - 1))
    return tokens


@dataclass(frozen=True)
class SimilarListing:
    """A reviewed listing as the similar panel shows it (plain values: cached, no model instance)."""

    pk: int
    title: str
    final_category_id: int | None
    final_brand: str
    tokens: frozenset[str]


def review_similar_reviewed(*, task: ReviewTask, limit: int = 5, pool: int = 200) -> list[dict[str, Any]]:
    """Already-reviewed listings with the same predicted category (or brand), ranked by title-token overlap.

    Cheap: a bounded pool of recent reviewed listings, Jaccard in Python. The pool is cached per
    (category, brand) for SIMILAR_POOL_TTL seconds: at a million listings the query visits every
    reviewed listing of the category (~40 ms for 7,000 rows), and every auditor in the same category
    would run it again (the lasting fix is an index on (final_category, status, -updated_at)); the
    panel is advice, so a few minutes of staleness is fine.
    """
    prediction = task.prediction
    cond = Q()
    if prediction.category_id:
        cond |= Q(final_category_id=prediction.category_id)
    if prediction.brand_id:
        cond |= Q(final_brand_id=prediction.brand_id)
    if not cond:
        return []

    def compute() -> list[SimilarListing]:
        rows = (
            Listing.objects.filter(cond, status=Listing.Status.REVIEWED)
            .order_by("-updated_at")
            .values_list("id", "title", "final_category_id", "final_brand__name")[: pool + 1]
        )
        return [
            SimilarListing(pk, title, category_id, brand or "", frozenset(_tokens(title)))
            for pk, title, category_id, brand in rows
        ]

    key = f"review:similar:v2:{prediction.category_id or 0}:{prediction.brand_id or 0}:{pool}"
    candidates = [c for c in _cached(key, SIMILAR_POOL_TTL, compute) if c.pk != task.listing_id][:pool]
    mine = _tokens(task.listing.title)
    scored = []
    for listing in candidates:
        theirs = listing.tokens
        overlap = len(mine & theirs) / len(mine | theirs) if (mine or theirs) else 0.0
        scored.append((overlap, listing))
    scored.sort(key=lambda pair: pair[0], reverse=True)
    return [{"listing": listing, "overlap": round(100 * overlap)} for overlap, listing in scored[:limit]]


def review_task_events(*, task_id: int, limit: int = 50) -> QuerySet[AuditEvent]:
    return (
        AuditEvent.objects.filter(object_type=ReviewTask._meta.label_lower, object_id=str(task_id))
        .select_related("actor")
        .order_by("-created_at", "-id")[:limit]
    )


def review_task_decisions(*, task_id: int) -> QuerySet[ReviewDecision]:
    return (
        ReviewDecision.objects.filter(task_id=task_id)
        .select_related("auditor", "category", "brand", "undoes")
        .order_by("-created_at", "-id")
    )


# --- completion -------------------------------------------------------------------------------


def category_leaves() -> list[tuple[int, str, str]]:
    """(id, path label, searchable text) of every active leaf category, cached for a minute."""

    def compute():
        labels = category_path_labels()
        rows = list(Category.objects.values_list("id", "parent_id", "is_active"))
        inactive = {pk for pk, _, active in rows if not active}
        parents = dict((pk, parent) for pk, parent, _ in rows)
        with_active_children = {parent for pk, parent, active in rows if parent and active}
        aliases: dict[int, list[str]] = {}
        for cat_id, alias in CategoryAlias.objects.values_list("category_id", "alias"):
            aliases.setdefault(cat_id, []).append(alias)
        leaves = []
        for pk, _parent, active in rows:
            if not active or pk in with_active_children:
                continue
            node, ok = parents.get(pk), True
            while node:
                if node in inactive:
                    ok = False
                    break
                node = parents.get(node)
            if ok:
                label = labels[pk]
                leaves.append((pk, label, (label + " " + " ".join(aliases.get(pk, []))).lower()))
        leaves.sort(key=lambda row: row[1])
        return leaves

    return _cached(CATEGORY_LABELS_KEY, CATEGORY_LABELS_TTL, compute)


def category_leaf_search(*, q: str, limit: int = 12) -> list[dict[str, Any]]:
    """Active leaf categories whose path or aliases contain every word of `q`, leaf-name matches first."""
    words = [w for w in q.lower().split() if w][:6]
    if not words:
        return []
    hits = []
    for pk, label, text in category_leaves():
        if all(w in text for w in words):
            leaf = label.rsplit(" > ", 1)[-1].lower()
            rank = 0 if leaf.startswith(words[0]) else 1 if words[0] in leaf else 2
            hits.append((rank, label, pk))
    hits.sort()
    return [{"id": pk, "label": label} for _, label, pk in hits[:limit]]


def brand_search(*, q: str, limit: int = 10) -> list[str]:
    q = q.strip()
    if not q:
        return []
    names = list(
        Brand.objects.filter(is_active=True, name__istartswith=q)
        .order_by("name")
        .values_list("name", flat=True)[:limit]
    )
    if len(names) < limit:
        names += [
            n
            for n in Brand.objects.filter(is_active=True, name__icontains=q)
            .exclude(name__istartswith=q)
            .order_by("name")
            .values_list("name", flat=True)[: limit - len(names)]
        ]
    if len(names) < limit:
        for _alias, brand in BrandAlias.objects.filter(
            alias__istartswith=q, brand__is_active=True
        ).values_list("alias", "brand__name")[: limit - len(names)]:
            if brand not in names:
                names.append(brand)
    return names


# --- bulk ------------------------------------------------------------------------------------


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


# --- audit trail -----------------------------------------------------------------------------


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


# --- stats -----------------------------------------------------------------------------------


def review_auditor_stats(*, since: datetime) -> list[dict[str, Any]]:
    """Per auditor: decisions, items per active hour, agreement with the final label, overturn rate.

    Agreement: of the auditor's approve/correct decisions still in force or not, the share whose category
    is the listing's final label. Overturned: the share of those later replaced by someone else's label.
    """
    decisions = ReviewDecision.objects.filter(created_at__gte=since).exclude(action=Action.UNDO)
    per_user: dict[int, dict[str, Any]] = {}
    for row in decisions.values("auditor_id", "auditor__username").annotate(
        n=Count("id"),
        hours=Count(TruncHour("created_at"), distinct=True),
        labels=Count("id", filter=Q(action__in=[Action.APPROVE, Action.CORRECT])),
        agree=Count(
            "id",
            filter=Q(
                action__in=[Action.APPROVE, Action.CORRECT], listing__final_category_id=F("category_id")
            ),
        ),
        undone=Count("id", filter=Q(undone_by__isnull=False)),
    ):
        per_user[row["auditor_id"]] = row
    # Overturned: a later approve/correct by someone else on the same listing with another category.
    later_other = (
        ReviewDecision.objects.filter(
            listing_id=OuterRef("listing_id"),
            action__in=[Action.APPROVE, Action.CORRECT],
            undone_by__isnull=True,
            created_at__gt=OuterRef("created_at"),
        )
        .exclude(auditor_id=OuterRef("auditor_id"))
        .exclude(category_id=OuterRef("category_id"))
    )
    overturned = {
        row["auditor_id"]: row["n"]
        for row in decisions.filter(action__in=[Action.APPROVE, Action.CORRECT], undone_by__isnull=True)
        .filter(Exists(later_other))
        .values("auditor_id")
        .annotate(n=Count("id"))
        .order_by()
    }
    out = []
    for auditor_id, row in sorted(per_user.items(), key=lambda kv: kv[1]["auditor__username"]):
        labels = row["labels"] or 0
        out.append(
            {
                "auditor_id": auditor_id,
                "username": row["auditor__username"],
                "decisions": row["n"],
                "per_hour": round(row["n"] / max(1, row["hours"]), 1),
                "agreement": round(100 * row["agree"] / labels, 1) if labels else None,
                "overturn": round(100 * overturned.get(auditor_id, 0) / labels, 1) if labels else None,
                "undone": row["undone"],
            }
        )
    return out


def review_rate_by_hour(*, hours: int = 24) -> list[dict[str, Any]]:
    now = timezone.now().replace(minute=0, second=0, microsecond=0)
    start = now - timedelta(hours=hours - 1)
    counts = {
        row["hour"]: row["n"]
        for row in ReviewDecision.objects.filter(created_at__gte=start)
        .exclude(action=Action.UNDO)
        .annotate(hour=TruncHour("created_at"))
        .values("hour")
        .annotate(n=Count("id"))
        .order_by()
    }
    return [
        {"hour": start + timedelta(hours=i), "n": counts.get(start + timedelta(hours=i), 0)}
        for i in range(hours)
    ]


def review_confidence_histogram(*, bins: int = 10) -> list[dict[str, Any]]:
    """Confidence of the predictions waiting in the queue, in `bins` buckets (cached a minute)."""

    def compute():
        rows = (
            ReviewTask.objects.filter(status=Status.PENDING)
            .annotate(bucket=Floor(Cast(F("prediction__confidence"), FloatField()) * bins))
            .values("bucket")
            .annotate(n=Count("id"))
            .order_by()
        )
        counts = [0] * bins
        for row in rows:
            b = int(row["bucket"] or 0)
            counts[min(max(b, 0), bins - 1)] += row["n"]
        return [{"lo": i / bins, "hi": (i + 1) / bins, "n": n} for i, n in enumerate(counts)]

    return _cached(f"review:confhist:{bins}", 60, compute)


def svg_bars(
    values: list[float], *, width: int = 640, height: int = 160, labels: list[str] | None = None
) -> dict:
    """Geometry for a server-side inline SVG bar chart (the template draws it; no JS, no CDN)."""
    n = max(1, len(values))
    top = max(values) if values and max(values) > 0 else 1
    gap = 2
    bar_w = (width - gap * n) / n
    plot_h = height - 20
    bars = []
    for i, v in enumerate(values):
        h = plot_h * v / top
        bars.append(
            {
                "x": round(i * (bar_w + gap), 1),
                "y": round(plot_h - h, 1),
                "w": round(bar_w, 1),
                "h": round(h, 1),
                "v": v,
                "label": labels[i] if labels else "",
                "lx": round(i * (bar_w + gap) + bar_w / 2, 1),
            }
        )
    return {"width": width, "height": height, "plot_h": plot_h, "bars": bars, "max": top}


# --- training --------------------------------------------------------------------------------


def training_examples_since(*, since: datetime | None = None) -> QuerySet[ReviewDecision]:
    """Labelled examples from reviews: approve/correct decisions still in force, oldest first.

    Each row has `.listing`, `.category`, `.brand` and `.cause` (model_error, knowledge_gap, bad_listing
    or "" for a plain approval). Undone decisions are excluded (their flag is cleared on undo).
    """
    qs = ReviewDecision.objects.filter(
        is_training_example=True, action__in=[Action.APPROVE, Action.CORRECT], category__isnull=False
    )
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    return qs.select_related("listing", "category", "brand").order_by("created_at", "id")
