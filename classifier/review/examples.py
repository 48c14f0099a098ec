"""Labelled examples from reviews: what fine-tuning learns from and the gate's recent items."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Max, QuerySet

from classifier.review.models import ReviewDecision
from knowledge.graph.selectors import category_path_labels

Action = ReviewDecision.Action

TRAINING_ACTIONS = (ReviewDecision.Action.APPROVE, ReviewDecision.Action.CORRECT)


@dataclass(frozen=True)
class LabelledListing:
    """One listing with the label a person gave it (a training example or an evaluation item)."""

    listing_id: int
    image_path: str
    title: str
    category_id: str  # snapshot id: the path label "Apparel > Topwear > Tshirts"
    brand: str
    decided_at: dt.datetime


def _decisions_in_window(start: dt.datetime | None, end: dt.datetime | None) -> QuerySet[ReviewDecision]:
    # The review area's selector defines what counts as a training example (one definition).
    qs = training_examples_since(since=start)
    return qs.filter(created_at__lte=end) if end is not None else qs


def training_examples_in_window(
    *, start: dt.datetime | None, end: dt.datetime | None, labels: dict[int, str] | None = None
) -> list[LabelledListing]:
    """Approved/corrected decisions in (start, end] as labelled listings, latest decision per listing."""

    labels = labels if labels is not None else category_path_labels()
    qs = (
        _decisions_in_window(start, end)
        .select_related("listing", "listing__final_category", "category", "brand", "listing__final_brand")
        .order_by("listing_id", "-created_at")
    )
    out: dict[int, LabelledListing] = {}
    for d in qs:
        if d.listing_id in out:
            continue
        category_pk = d.category_id or d.listing.final_category_id
        if category_pk is None or category_pk not in labels or not d.listing.image:
            continue
        brand = d.brand or d.listing.final_brand
        out[d.listing_id] = LabelledListing(
            listing_id=d.listing_id,
            image_path=d.listing.image.path,
            title=d.listing.title,
            category_id=labels[category_pk],
            brand=brand.name if brand else "",
            decided_at=d.created_at,
        )
    return list(out.values())


def training_example_count(*, start: dt.datetime | None, end: dt.datetime | None) -> int:
    """How many listings have an approved correction in (start, end]."""
    return _decisions_in_window(start, end).values("listing_id").distinct().count()


def recent_reviewed_items(*, since: dt.datetime, limit: int) -> list[LabelledListing]:
    """The latest `limit` listings people approved or corrected since `since` (the gate's second set)."""
    items = training_examples_in_window(start=since, end=None)
    items.sort(key=lambda i: i.decided_at, reverse=True)
    return items[:limit]


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


def _pks_of(leaves: Collection[str], labels: dict[int, str]) -> dict[int, str]:
    wanted = set(leaves)
    return {pk: label for pk, label in labels.items() if label in wanted}


def new_category_examples_stamp(*, leaves: Collection[str], labels: dict[int, str]) -> tuple[int, int]:
    """(how many, latest id) of the training examples labelled with one of `leaves`: it moves when a
    decision adds one or an undo takes one away (one aggregate query)."""
    stamp = (
        training_examples_since()
        .filter(category_id__in=_pks_of(leaves, labels))
        .order_by()
        .aggregate(n=Count("id"), last=Max("id"))
    )
    return int(stamp["n"]), int(stamp["last"] or 0)


def new_category_examples(
    *, leaves: Collection[str], labels: dict[int, str], per_category: int
) -> dict[str, list[LabelledListing]]:
    """The latest `per_category` listings people approved or corrected into each of `leaves` (the
    categories the serving model never trained on) and that still carry that label: their few-shot
    examples until a fine-tune learns them. Leaves without any are left out."""
    out: dict[str, list[LabelledListing]] = {}
    pks = _pks_of(leaves, labels)
    # one query per category that has examples, not per new leaf (an imported taxonomy adds thousands)
    with_examples = (
        training_examples_since()
        .filter(category_id__in=pks)
        .order_by()
        .values_list("category_id", flat=True)
        .distinct()
    )
    for pk in sorted(with_examples):
        label = pks[pk]
        decisions = (
            training_examples_since()
            .filter(category_id=pk, listing__final_category_id=pk)
            .exclude(listing__image="")
            .order_by("-created_at", "-id")[:per_category]
        )
        rows = [
            LabelledListing(
                listing_id=d.listing_id,
                image_path=d.listing.image.path,
                title=d.listing.title,
                category_id=label,
                brand=d.brand.name if d.brand else "",
                decided_at=d.created_at,
            )
            for d in decisions
        ]
        if rows:
            out[label] = rows
    return out
