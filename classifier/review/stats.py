"""Review statistics: per-auditor figures, decisions per hour, the queue's confidence histogram."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, TypedDict

from django.db.models import Count, Exists, F, FloatField, OuterRef, Q
from django.db.models.functions import Cast, Floor, TruncHour
from django.utils import timezone

from classifier.review.models import ReviewDecision, ReviewTask
from classifier.review.selectors import cached_compute

Action = ReviewDecision.Action
Status = ReviewTask.Status


class AuditorStats(TypedDict):
    auditor_id: int
    username: str
    decisions: int
    per_hour: float
    agreement: float | None
    overturn: float | None
    undone: int


class HourCount(TypedDict):
    hour: datetime
    n: int


class ConfidenceBin(TypedDict):
    lo: float
    hi: float
    n: int


def review_auditor_stats(*, since: datetime) -> list[AuditorStats]:
    """Per auditor: decisions, items per active hour, agreement with the final label, overturn rate.

    Agreement: of the auditor's approve/correct decisions still in force or not, the share whose category
    is the listing's final label. Overturned: the share of those later replaced by someone else's label.
    """
    decisions = ReviewDecision.objects.filter(created_at__gte=since).exclude(action=Action.UNDO)
    per_user: dict[int, Mapping[str, Any]] = {}
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
    out: list[AuditorStats] = []
    for auditor_id, stats in sorted(per_user.items(), key=lambda kv: str(kv[1]["auditor__username"])):
        labels = stats["labels"] or 0
        out.append(
            {
                "auditor_id": auditor_id,
                "username": stats["auditor__username"],
                "decisions": stats["n"],
                "per_hour": round(stats["n"] / max(1, stats["hours"]), 1),
                "agreement": round(100 * stats["agree"] / labels, 1) if labels else None,
                "overturn": round(100 * overturned.get(auditor_id, 0) / labels, 1) if labels else None,
                "undone": stats["undone"],
            }
        )
    return out


def review_rate_by_hour(*, hours: int = 24) -> list[HourCount]:
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


def review_confidence_histogram(*, bins: int = 10) -> list[ConfidenceBin]:
    """Confidence of the predictions waiting in the queue, in `bins` buckets (cached a minute)."""

    def compute() -> list[ConfidenceBin]:
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

    return cached_compute(f"review:confhist:{bins}", 60, compute)


def svg_bars(
    values: list[float], *, width: int = 640, height: int = 160, labels: list[str] | None = None
) -> dict[str, object]:
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
