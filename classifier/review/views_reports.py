"""Review pages beside the loop: bulk approval, audit trail, statistics."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.views.decorators.http import require_GET

from classifier.review import bulk as review_bulk
from classifier.review import selectors as review_selectors
from classifier.review import services as svc
from classifier.review import stats as sel
from classifier.review.models import ReviewTask
from classifier.review.views import _int_or_none, _queue_filters, reviewer_required

Reason = ReviewTask.Reason


def _bulk_filters(data) -> tuple[dict[str, Any], list[str]]:
    errors = []
    filters = _queue_filters(data)
    raw = (data.get("min_confidence") or "").strip()
    min_conf = None
    if raw:
        try:
            min_conf = float(raw)
            if not 0 <= min_conf <= 1:
                raise ValueError
        except ValueError:
            errors.append("Minimum confidence must be a number between 0 and 1 (e.g. 0.8).")
            min_conf = None
    filters["min_confidence"] = min_conf
    return filters, errors


@reviewer_required
def bulk(request: HttpRequest) -> HttpResponse:
    """GET: the filtered list. POST without confirm: "Approve N items?". POST with confirm: do it."""
    if request.method == "POST":
        ids = [pk for pk in (_int_or_none(v) for v in request.POST.getlist("task")) if pk]
        filters, errors = _bulk_filters(request.POST)
        if not ids:
            errors.append("Select at least one item to approve.")
        elif request.POST.get("confirm") == "yes":
            try:
                outcome = review_bulk.review_bulk_approve(auditor=request.user, task_ids=ids)
            except svc.ReviewError as exc:
                errors.append(str(exc))
            else:
                context = {"outcome": outcome, "requested": len(ids), "filters": filters}
                template = "classifier/partials/review_bulk_result.html"
                if not request.htmx:
                    template = "classifier/review_bulk_done.html"
                return render(request, template, context)
        else:
            context = {"ids": ids, "count": len(ids), "filters": filters}
            template = (
                "classifier/partials/review_bulk_confirm.html"
                if request.htmx
                else "classifier/review_bulk_confirm.html"
            )
            return render(request, template, context)
        tasks = review_selectors.review_bulk_candidates(**filters)
        return render(
            request,
            "classifier/review_bulk.html",
            {"tasks": tasks, "filters": filters, "errors": errors},
            status=400,
        )
    filters, errors = _bulk_filters(request.GET)
    tasks = review_selectors.review_bulk_candidates(**filters) if not errors else []
    counts = review_selectors.review_queue_counts()
    return render(
        request,
        "classifier/review_bulk.html",
        {"tasks": tasks, "filters": filters, "errors": errors, "reasons": Reason.choices, "counts": counts},
    )


def _day_bound(value: str, *, end: bool) -> datetime | None:
    day = parse_date(value or "")
    if day is None:
        return None
    moment = timezone.make_aware(datetime.combine(day, time.min))
    return moment + timedelta(days=1) if end else moment


@reviewer_required
@require_GET
def audit(request: HttpRequest) -> HttpResponse:
    user_id = _int_or_none(request.GET.get("user"))
    verb = request.GET.get("verb") or None
    errors = []
    for key in ("from", "to"):
        if request.GET.get(key) and parse_date(request.GET[key]) is None:
            errors.append(f"“{key}” must be a date like 2025-01-31.")
    events = review_selectors.review_audit_events(
        user_id=user_id,
        verb=verb,
        date_from=_day_bound(request.GET.get("from", ""), end=False),
        date_to=_day_bound(request.GET.get("to", ""), end=True),
    )
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    users = get_user_model().objects.filter(decisions__isnull=False).distinct().order_by("username")
    verbs = [
        "review.claim",
        "review.release",
        "review.approve",
        "review.correct",
        "review.skip",
        "review.escalate",
        "review.undo",
    ]
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "page": page,
        "users": users,
        "verbs": verbs,
        "f": {
            "user": user_id,
            "verb": verb,
            "from": request.GET.get("from", ""),
            "to": request.GET.get("to", ""),
        },
        "errors": errors,
        "query": query.urlencode(),
    }
    if request.htmx and request.htmx.target == "audit-table":
        return render(request, "classifier/partials/review_audit_table.html", context)
    return render(request, "classifier/review_audit.html", context)


@reviewer_required
@require_GET
def stats(request: HttpRequest) -> HttpResponse:
    days = _int_or_none(request.GET.get("days")) or 7
    days = max(1, min(days, 90))
    since = timezone.now() - timedelta(days=days)
    rate = sel.review_rate_by_hour(hours=24)
    hist = sel.review_confidence_histogram()
    counts = review_selectors.review_queue_counts()
    context = {
        "days": days,
        "auditors": sel.review_auditor_stats(since=since),
        "rate_chart": sel.svg_bars(
            [r["n"] for r in rate], labels=[timezone.localtime(r["hour"]).strftime("%H") for r in rate]
        ),
        "hist_chart": sel.svg_bars([h["n"] for h in hist], labels=[f"{h['lo']:.1f}" for h in hist]),
        "queue_chart": sel.svg_bars(
            [r["n"] for r in counts["by_reason"]], labels=[r["label"] for r in counts["by_reason"]], width=360
        ),
        "counts": counts,
    }
    return render(request, "classifier/review_stats.html", context)
