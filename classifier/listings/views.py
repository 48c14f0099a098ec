"""Listing pages: the filterable list (HTMX-refreshed table) and one listing with its prediction."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required, permission_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from classifier.listings.models import Listing
from classifier.listings.selectors import (
    listing_current_prediction,
    listing_open_review_task,
    listing_status_counts,
)
from classifier.listings.selectors import listing_detail as listing_detail_select
from classifier.listings.selectors import listing_list as listing_list_select
from classifier.review.display import category_display_labels, listings_predicted, top_k_rows_unambiguous
from classifier.review.item import top_k_rows
from fusionreview.roles import Perm
from knowledge.graph.selectors import category_path_labels

PAGE_SIZE = 50


@login_required
@permission_required(Perm.VIEW_LISTINGS, raise_exception=True)
def listing_list(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status", "")
    if status not in Listing.Status.values:
        status = ""
    search = request.GET.get("q", "").strip()[:200]
    qs = listing_list_select(status=status, search=search)
    page = Paginator(qs, PAGE_SIZE).get_page(request.GET.get("page"))
    _label_rows(page.object_list)
    context = {
        "page": page,
        "status": status,
        "q": search,
        "statuses": Listing.Status.choices,
    }
    if request.htmx and request.htmx.target == "listing-results":
        return render(request, "classifier/partials/listing_table.html", context)
    counts = listing_status_counts()
    context["status_counts"] = [
        (value, label, counts.get(value, 0)) for value, label in Listing.Status.choices
    ]
    return render(request, "classifier/listing_list.html", context)


def _label_rows(listings) -> None:
    """Each row's category as people should read it: the final label (with its path where the leaf name is
    ambiguous), or for rows still in review what the model predicted, marked as such."""
    rows = list(listings)
    display = category_display_labels()
    predicted = listings_predicted(listing_ids=[row.pk for row in rows if not row.final_category_id])
    paths = category_path_labels() if any(row.final_category_id for row in rows) else {}
    for row in rows:
        row.category_path = paths.get(row.final_category_id, "")
        row.category_display = display.get(row.final_category_id, "") if row.final_category_id else ""
        row.predicted = predicted.get(row.pk)


def _top_k_unambiguous(prediction) -> list[tuple[str, float]]:
    """The model's top-5 leaves as (name, probability), with the path where a leaf name is ambiguous."""

    rows = top_k_rows_unambiguous(top_k_rows(prediction.top_k), prediction)
    article = next((row for row in rows if row["level"] == "article"), {"options": []})
    return [(opt["name"], opt["pct"] / 100) for opt in article["options"]]


@login_required
@permission_required(Perm.VIEW_LISTINGS, raise_exception=True)
def listing_detail(request: HttpRequest, pk: int) -> HttpResponse:
    listing = listing_detail_select(listing_id=pk)
    if listing is None:
        raise Http404("No such listing")
    prediction = listing_current_prediction(listing=listing)
    levels = []
    if prediction:
        levels = [
            ("Master", prediction.master_category, prediction.master_confidence),
            ("Sub", prediction.sub_category, prediction.sub_confidence),
            ("Article type", prediction.article_type, prediction.article_confidence),
        ]
    context = {
        "listing": listing,
        "prediction": prediction,
        "levels": levels,
        "task": listing_open_review_task(listing=listing),
        "tasks": list(listing.review_tasks.all()),
        "top_k": _top_k_unambiguous(prediction) if prediction else [],
    }
    if request.htmx and request.htmx.target == "listing-state":
        return render(request, "classifier/partials/listing_state.html", context)
    return render(request, "classifier/listing_detail.html", context)
