"""Reads about listings and their predictions."""

from __future__ import annotations

from django.db.models import Count, Prefetch, Q, QuerySet

from classifier.listings.models import Listing, Prediction
from classifier.registry.models import ModelVersion
from classifier.review.models import ReviewTask


def listings_pending_ids(*, version: ModelVersion, limit: int, exclude: set[int] | None = None) -> list[int]:
    """Queued listings with no prediction from `version` yet, oldest first."""
    qs = (
        Listing.objects.filter(status=Listing.Status.QUEUED)
        .exclude(predictions__model_version=version)
        .order_by("created_at", "pk")
    )
    if exclude:
        qs = qs.exclude(pk__in=exclude)
    return list(qs.values_list("pk", flat=True)[:limit])


def listing_list(*, status: str = "", search: str = "") -> QuerySet[Listing]:
    """Listings newest first, filtered by status and a title search; only what a list row needs."""
    qs = Listing.objects.select_related("final_category", "final_brand").only(
        "id",
        "source",
        "external_id",
        "title",
        "status",
        "image",
        "created_at",
        "final_category__id",
        "final_category__name",
        "final_brand__id",
        "final_brand__name",
    )
    if status:
        qs = qs.filter(status=status)
    if search:
        qs = qs.filter(Q(title__icontains=search) | Q(external_id=search))
    return qs.order_by("-created_at", "-pk")


def listing_current_prediction(*, listing: Listing) -> Prediction | None:
    """The prediction in force: from the promoted model if it made one, else the newest non-shadow one."""
    qs = listing.predictions.filter(is_shadow=False).select_related("model_version", "category", "brand")
    promoted = qs.filter(model_version__status=ModelVersion.Status.PROMOTED).first()
    return promoted or qs.order_by("-created_at", "-pk").first()


def listing_detail(*, listing_id: int) -> Listing | None:
    """One listing with its final labels, predictions and review tasks loaded."""
    return (
        Listing.objects.select_related("final_category", "final_brand", "created_by")
        .prefetch_related(
            Prefetch(
                "review_tasks",
                queryset=ReviewTask.objects.select_related("claimed_by").order_by("-created_at"),
            )
        )
        .filter(pk=listing_id)
        .first()
    )


def listing_open_review_task(*, listing: Listing) -> ReviewTask | None:
    """The listing's open review task, if any (at most one by constraint)."""
    return next((t for t in listing.review_tasks.all() if t.status != ReviewTask.Status.DONE), None)


def listing_status_counts() -> dict[str, int]:

    rows = Listing.objects.values("status").annotate(n=Count("id")).order_by()
    return {row["status"]: row["n"] for row in rows}
