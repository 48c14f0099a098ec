"""`knowledge.ports.GraphReferences` answered from the classifier's tables."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime

from django.db.models import Count, Model

from classifier.fusion.knowledge import KnowledgeSnapshot
from classifier.models import Listing, Prediction, ReviewDecision, ReviewTask
from classifier.reroute.checker import reroute_plan
from classifier.reroute.jobs import reroute_undo_version
from knowledge.ports import Actor, CategoryUse, Evidence, ListingRef, RecentPrediction, ReroutePlan, RowIds

# The rows that name a category, by the key merges record their moved ids under.
_CATEGORY_FIELDS: tuple[tuple[str, type[Model], str], ...] = (
    ("listings", Listing, "final_category"),
    ("predictions", Prediction, "category"),
    ("review_tasks", ReviewTask, "category"),
    ("decisions", ReviewDecision, "category"),
)


class ClassifierReferences:
    def category_use(self, *, category_id: int) -> CategoryUse:
        return CategoryUse(
            listings=Listing.objects.filter(final_category_id=category_id).count(),
            predictions=Prediction.objects.filter(category_id=category_id).count(),
            decisions=ReviewDecision.objects.filter(category_id=category_id).count(),
        )

    def category_listing_counts(self) -> dict[int, int]:
        return dict(
            Listing.objects.filter(final_category__isnull=False)
            .values_list("final_category")
            .annotate(n=Count("id"))
            .values_list("final_category", "n")
        )

    def category_repoint(
        self, *, source_id: int, target_id: int
    ) -> tuple[dict[str, int], dict[str, list[int]]]:
        # The ids that move are recorded so that restoring a version before the merge puts them back.
        moved_ids = {
            key: list(
                model._default_manager.filter(**{f"{field}_id": source_id}).values_list("id", flat=True)
            )
            for key, model, field in _CATEGORY_FIELDS
        }
        moved = {
            key: model._default_manager.filter(**{f"{field}_id": source_id}).update(
                **{f"{field}_id": target_id}
            )
            for key, model, field in _CATEGORY_FIELDS
        }
        return moved, moved_ids

    def category_repoint_back(
        self, *, moved_ids: Mapping[str, Sequence[int]], from_id: int, to_id: int
    ) -> int:
        moved_back = 0
        for key, model, field in _CATEGORY_FIELDS:
            pks = moved_ids.get(key) or []
            if pks:
                moved_back += model._default_manager.filter(pk__in=pks, **{f"{field}_id": from_id}).update(
                    **{f"{field}_id": to_id}
                )
        return moved_back

    def brand_repoint(self, *, source_id: int, target_id: int) -> dict[str, int]:
        return {
            "listings": Listing.objects.filter(final_brand_id=source_id).update(final_brand_id=target_id),
            "predictions": Prediction.objects.filter(brand_id=source_id).update(brand_id=target_id),
            "decisions": ReviewDecision.objects.filter(brand_id=source_id).update(brand_id=target_id),
        }

    def brand_listings(self, *, brand_id: int, limit: int) -> tuple[list[ListingRef], int]:
        recent = Listing.objects.filter(final_brand_id=brand_id).order_by("-created_at")[:limit]
        refs = [
            ListingRef(id=x.pk, title=x.title, created_at=x.created_at, category_id=x.final_category_id)
            for x in recent
        ]
        return refs, Listing.objects.filter(final_brand_id=brand_id).count()

    def decision_evidence(self) -> Iterator[Evidence]:
        decisions = (
            ReviewDecision.objects.filter(
                action__in=[ReviewDecision.Action.APPROVE, ReviewDecision.Action.CORRECT],
                brand__isnull=False,
                undone_by__isnull=True,
            )
            .order_by("id")
            .values_list("listing_id", "brand_id", "category_id", "listing__title")
        )
        for listing_id, brand_id, category_id, title in decisions.iterator(chunk_size=2000):
            yield Evidence(listing_id=listing_id, brand_id=brand_id, category_id=category_id, title=title)

    def accepted_listings(self) -> Iterator[tuple[int, int, int]]:
        accepted = Listing.objects.filter(
            status=Listing.Status.ACCEPTED, final_brand__isnull=False, final_category__isnull=False
        ).values_list("id", "final_brand_id", "final_category_id")
        yield from accepted.iterator(chunk_size=5000)

    def recent_predictions(self, *, since: datetime, limit: int) -> list[RecentPrediction]:
        rows = (
            Prediction.objects.filter(created_at__gte=since, is_shadow=False)
            .order_by("-created_at")
            .values_list("id", "listing_id", "listing__title", "category_id", "category_label")[:limit]
        )
        return [
            RecentPrediction(id=p, listing_id=li, title=t, category_id=c, category_label=lab)
            for p, li, t, c, lab in rows
        ]

    def reroute_plan(
        self, *, snapshot: KnowledgeSnapshot, row_ids: RowIds | None, window_days: int, limit: int
    ) -> ReroutePlan:
        return reroute_plan(
            snapshot=snapshot, row_ids=row_ids, new_conflict_window_days=window_days, new_conflict_limit=limit
        )

    def reroute_undo(self, *, number: int, actor: Actor) -> dict[str, int]:
        return reroute_undo_version(number=number, actor=actor)
