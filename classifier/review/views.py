"""Review queue pages: queue overview, the item page and its actions, bulk approval, audit trail, stats.

Views only translate HTTP to services/selectors. Each renders a full page, or for htmx requests the
partial that changes; the "work" partial (`review_item.html`) is swapped in place after every action
and the browser URL follows it (HX-Push-Url), so the next item loads without a full page reload.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import push_url

from classifier.listings.models import RouteReasonChoice
from classifier.review import decisions as review_decisions
from classifier.review import display as review_ui
from classifier.review import item as review_item
from classifier.review import selectors as sel
from classifier.review import services as svc
from classifier.review.models import ReviewDecision, ReviewTask
from fusionreview.roles import Perm, perm_required
from knowledge.changelog import KnowledgeError
from knowledge.graph.brands import brand_create
from knowledge.models import Category

Reason = ReviewTask.Reason
Cause = ReviewDecision.Cause
reviewer_required = perm_required(Perm.REVIEW)


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _queue_filters(data) -> dict[str, Any]:
    reason = data.get("reason") or None
    # a task reason, or the router's reason as "route:<reason>" (e.g. route:unknown_category)
    routes = {sel.ROUTE_FILTER_PREFIX + r for r in RouteReasonChoice.values}
    if reason not in Reason.values and reason not in routes:
        reason = None
    return {"reason": reason, "category_id": _int_or_none(data.get("category"))}


@reviewer_required
@require_GET
def queues(request: HttpRequest) -> HttpResponse:
    filters = _queue_filters(request.GET)
    after_response: list[Callable[[], object]] = []
    counts = sel.review_queue_counts(on_stale=after_response.append)
    tasks = sel.review_queue_tasks(**filters, limit=50)
    context = {
        "counts": counts,
        "tasks": tasks,
        "rows": review_ui.review_queue_rows(tasks),
        "filters": filters,
        "reasons": Reason.choices,
        "held": sel.review_task_held_by(auditor=request.user),
        "sla_hours": settings.REVIEW_SLA_HOURS,
    }
    if request.htmx and request.htmx.target == "queue-list":
        response = render(request, "classifier/partials/review_queue_list.html", context)
    else:
        response = render(request, "classifier/review_queues.html", context)
    # Stale counts are recounted once the page has gone out (the WSGI server closes the response
    # after sending it, and Django runs these then).
    response._resource_closers.extend(after_response)
    return response


def _item_context(
    request: HttpRequest, task: ReviewTask | None, notice: tuple[str, str] | None = None, **extra
):
    context: dict[str, Any] = {
        "task": task,
        "notice": {"level": notice[0], "text": notice[1]} if notice else None,
        "causes": [c for c in Cause.choices if c[0]],
        "filters": extra.pop("filters", {"reason": None, "category_id": None}),
        "undo_window_minutes": svc.UNDO_WINDOW_SECONDS // 60,
    }
    if task is not None:
        prediction = task.prediction
        leaves = review_item.category_leaves()  # one cache read for the top-k names and the picker
        context.update(
            mine=task.status == ReviewTask.Status.CLAIMED and task.claimed_by_id == request.user.pk,
            prediction=prediction,
            segments=review_item.title_segments(task.listing.title, prediction.entities),
            top_k=review_ui.top_k_rows_unambiguous(
                review_item.top_k_rows(prediction.top_k), prediction, leaves
            ),
            attention_words=review_ui.attention_words(prediction.entities),
            picker=review_ui.category_picker(
                q="", prediction=prediction, auditor=request.user, leaves=leaves
            ),
            findings=review_item.findings_in_words(prediction.knowledge_findings),
            similar=_with_labels(review_item.review_similar_reviewed(task=task)),
            events=sel.review_task_events(task_id=task.pk),
            decisions=sel.review_task_decisions(task_id=task.pk),
            level_confidences=[
                ("Master", prediction.master_category, prediction.master_confidence),
                ("Sub", prediction.sub_category, prediction.sub_confidence),
                ("Article", prediction.article_type, prediction.article_confidence),
            ],
        )
    context.update(extra)
    return context


def _draft(data, *, unknown_brand: str = "") -> dict[str, Any]:
    """What the auditor typed in the correction panel, to render it again after a refusal."""

    category_id = _int_or_none(data.get("category_id"))
    category = Category.objects.filter(pk=category_id).first() if category_id else None
    return {
        "action": data.get("action", ""),
        "category_id": category_id or "",
        "category_label": category.path_label if category else "",
        "brand": (data.get("brand") or "")[:200],
        "cause": data.get("cause", ""),
        "comment": (data.get("comment") or "")[:2000],
        "unknown_brand": unknown_brand,
    }


def _with_labels(similar: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each similar listing's label as people read it, from the cached labels (no per-row parent walk)."""
    display = review_ui.category_display_labels()
    for row in similar:
        row["category_label"] = display.get(row["listing"].final_category_id, "")
    return similar


def _render_item(
    request: HttpRequest,
    task: ReviewTask | None,
    *,
    notice: tuple[str, str] | None = None,
    filters: dict | None = None,
    push: bool = True,
    draft: dict | None = None,
    claimed: bool = False,
) -> HttpResponse:
    if task is not None:
        # A task "claim next" just locked with its rows is shown as it is; any other is read again.
        task = (
            sel.review_task_annotate_sla(task)
            if claimed and sel.review_task_page_loaded(task)
            else sel.review_task_for_page(task_id=task.pk)
        )
    context = _item_context(
        request,
        task,
        notice,
        filters=filters or {"reason": None, "category_id": None},
        draft=draft or {},
        can_add_brand=request.user.has_perm(Perm.EDIT_KNOWLEDGE),
    )
    if request.htmx:
        response = render(request, "classifier/partials/review_item.html", context)
        if push:
            url = reverse("review-task", args=[task.pk]) if task else reverse("review-queues")
            push_url(response, url)
        return response
    if notice:
        getattr(messages, notice[0], messages.info)(request, notice[1])
    if task is None:
        return redirect("review-queues")
    return redirect("review-task", task_id=task.pk)


def _filters_query(filters: dict) -> str:
    parts = []
    if filters.get("reason"):
        parts.append(f"reason={filters['reason']}")
    if filters.get("category_id"):
        parts.append(f"category={filters['category_id']}")
    return "&".join(parts)


@reviewer_required
@require_POST
def next_item(request: HttpRequest) -> HttpResponse:
    """Claim the next task (or get back the one already held) and show it."""
    filters = _queue_filters(request.POST)
    task = svc.review_claim_next(auditor=request.user, **filters)
    notice = None if task else ("info", "This queue is empty. Nice work!")
    return _render_item(request, task, notice=notice, filters=filters, claimed=True)


@reviewer_required
@require_GET
def task_page(request: HttpRequest, task_id: int) -> HttpResponse:
    task = sel.review_task_for_page(task_id=task_id)
    if task is None:
        messages.error(request, "That review task does not exist.")
        return redirect("review-queues")
    context = _item_context(request, task, filters=_queue_filters(request.GET))
    if request.htmx:
        return render(request, "classifier/partials/review_item.html", context)
    return render(request, "classifier/review_item.html", context)


@reviewer_required
@require_POST
def claim_task(request: HttpRequest, task_id: int) -> HttpResponse:
    try:
        task = svc.review_claim_task(auditor=request.user, task_id=task_id)
    except svc.ReviewError as exc:
        task = sel.review_task_for_page(task_id=task_id)
        return _render_item(request, task, notice=(exc.level, str(exc)))
    return _render_item(request, task)


@reviewer_required
@require_POST
def decide(request: HttpRequest, task_id: int) -> HttpResponse:
    """Approve / correct / skip / escalate, then hand out the next item in the same queue."""
    data = request.POST
    filters = _queue_filters(data)
    action = data.get("action", "")
    try:
        outcome = review_decisions.review_decide(
            auditor=request.user,
            task_id=task_id,
            version=data.get("version"),
            action=action,
            category_id=data.get("category_id"),
            brand_name=data.get("brand", ""),
            cause=data.get("cause", ""),
            comment=data.get("comment", ""),
            brand_unresolved=data.get("brand_unresolved") == "1",
        )
    except svc.InvalidDecision as exc:
        # Stay on the item with what the auditor typed: they fix the input, nothing is lost.
        task = sel.review_task_for_page(task_id=task_id)
        draft = _draft(data, unknown_brand=getattr(exc, "brand_name", ""))
        return _render_item(
            request, task, notice=("error", str(exc)), filters=filters, push=False, draft=draft
        )
    except svc.ReviewError as exc:
        # Claim lost or already recorded: nothing was written; move on to the next item.
        task = svc.review_claim_next(auditor=request.user, **filters)
        return _render_item(request, task, notice=(exc.level, str(exc)), filters=filters, claimed=True)
    done = {
        "approve": "Approved",
        "correct": "Corrected",
        "skip": "Skipped",
        "escalate": "Escalated",
    }[outcome.decision.action]
    # The decision holds the listing and category objects the service loaded: no query for the notice.
    category = outcome.decision.category
    label = category.path_label if category is not None else ""
    text = (
        f"{done}: “{outcome.decision.listing.title[:60]}”"
        + (f" → {label}" if label else "")
        + ". Press U to undo."
    )
    task = svc.review_claim_next(auditor=request.user, **filters, after_decision=True)
    if task is None:
        text += " The queue is empty."
    return _render_item(request, task, notice=("success", text), filters=filters, claimed=True)


@perm_required(Perm.EDIT_KNOWLEDGE)
@require_POST
def brand_add(request: HttpRequest, task_id: int) -> HttpResponse:
    """Ops, from a refused correction: add the brand it named, then show the correction again as typed."""

    data = request.POST
    filters = _queue_filters(data)
    name = (data.get("brand") or "").strip()
    task = sel.review_task_for_page(task_id=task_id)
    try:
        brand = brand_create(
            actor=request.user, name=name, reason=f"named in a correction of review task {task_id}"
        )
    except KnowledgeError as exc:
        notice = ("error", str(exc))
        draft = _draft(data, unknown_brand=name)
    else:
        notice = ("success", f"Brand “{brand.name}” added (pending publish); save the correction again.")
        draft = _draft(data)
    return _render_item(request, task, notice=notice, filters=filters, push=False, draft=draft)


@reviewer_required
@require_POST
def undo(request: HttpRequest) -> HttpResponse:
    filters = _queue_filters(request.POST)
    try:
        outcome = review_decisions.review_undo_last(auditor=request.user)
    except svc.ReviewError as exc:
        held = sel.review_task_held_by(auditor=request.user)
        return _render_item(request, held, notice=(exc.level, str(exc)), filters=filters)
    text = f"Undid your {outcome.decision.undoes.get_action_display().lower()}; the item is yours again."
    return _render_item(request, outcome.task, notice=("info", text), filters=filters)


@reviewer_required
@require_POST
def release(request: HttpRequest, task_id: int) -> HttpResponse:
    svc.review_release(auditor=request.user, task_id=task_id)
    messages.info(request, "The item went back to the queue.")
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Redirect"] = reverse("review-queues")
        return response
    return redirect("review-queues")


@reviewer_required
@require_GET
def category_search(request: HttpRequest) -> HttpResponse:
    """The picker's list: suggested (the task's top-5) and recent first; full paths."""
    q = request.GET.get("q", "")[:100]
    task_id = _int_or_none(request.GET.get("task"))
    task = sel.review_task_for_page(task_id=task_id) if task_id else None
    picker = review_ui.category_picker(
        q=q, prediction=task.prediction if task else None, auditor=request.user
    )
    return render(request, "classifier/partials/review_category_results.html", {"picker": picker})


@reviewer_required
@require_GET
def brand_search(request: HttpRequest) -> HttpResponse:
    q = request.GET.get("brand", "") or request.GET.get("q", "")
    return render(
        request,
        "classifier/partials/review_brand_options.html",
        {"names": review_item.brand_search(q=q[:100])},
    )
