"""Factories for review-queue tests: rows made directly, never by running the model."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from classifier.models import Listing, ModelVersion, Prediction, ReviewTask
from knowledge.models import Brand, BrandCategory, Category
from tests.conftest import jpeg_bytes

_seq = itertools.count(1)
_IMAGE_NAME: str | None = None


def tiny_image_name() -> str:
    """One tiny JPEG in storage, shared by every factory listing."""
    global _IMAGE_NAME
    if _IMAGE_NAME is None or not default_storage.exists(_IMAGE_NAME):
        _IMAGE_NAME = default_storage.save("listings/tests/tiny.jpg", ContentFile(jpeg_bytes((48, 60))))
    return _IMAGE_NAME


def category_path(*names: str) -> Category:
    """Get or create the path root > ... > leaf and return the leaf."""
    node = None
    for name in names:
        node, _ = Category.objects.get_or_create(parent=node, name=name)
    return node


def brand(name: str, *, sells: Category | None = None) -> Brand:
    obj, _ = Brand.objects.get_or_create(name=name)
    if sells is not None:
        BrandCategory.objects.get_or_create(brand=obj, category=sells)
    return obj


def model_version(name: str = "test-v1") -> ModelVersion:
    obj, _ = ModelVersion.objects.get_or_create(
        name=name, defaults={"artifact_dir": "/nonexistent", "checksum": "0" * 64}
    )
    return obj


def _prediction_fields(
    category: Category | None, confidence: float, brand_obj: Brand | None
) -> dict[str, Any]:
    path = category.path if category else ["Apparel", "Topwear", "Tshirts"]
    path = [*path, "", "", ""][:3]
    label = " > ".join(p for p in path if p)
    return {
        "category": category,
        "category_label": label,
        "master_category": path[0],
        "sub_category": path[1],
        "article_type": path[2],
        "master_confidence": min(1.0, confidence + 0.2),
        "sub_confidence": min(1.0, confidence + 0.1),
        "article_confidence": confidence,
        "confidence": confidence,
        "top_k": {
            "master": [[path[0], min(1.0, confidence + 0.2)], ["Footwear", 0.05]],
            "sub": [[path[1], min(1.0, confidence + 0.1)], ["Bottomwear", 0.1]],
            "article": [[path[2], confidence], ["Shirts", round((1 - confidence) / 2, 3)]],
        },
        "brand": brand_obj,
        "brand_label": brand_obj.name if brand_obj else "",
        "brand_confidence": 0.8 if brand_obj else 0.0,
        "compute_path": Prediction.Path.FULL,
        "latency_ms": 12.5,
        "needs_review": True,
    }


def review_task(
    *,
    title: str | None = None,
    category: Category | None = None,
    brand_obj: Brand | None = None,
    confidence: float = 0.42,
    reason: str = ReviewTask.Reason.LOW_CONFIDENCE,
    priority: float | None = None,
    age: timedelta | None = None,
    entities: list | None = None,
    findings: list | None = None,
    version: ModelVersion | None = None,
) -> ReviewTask:
    n = next(_seq)
    category = category or category_path("Apparel", "Topwear", "Tshirts")
    listing = Listing.objects.create(
        source="test",
        external_id=f"ext-{n}-{timezone.now().timestamp()}",
        title=title or f"Red cotton t-shirt number {n}",
        image=tiny_image_name(),
        image_sha256=f"{n:064d}",
        status=Listing.Status.IN_REVIEW,
    )
    prediction = Prediction.objects.create(
        listing=listing,
        model_version=version or model_version(),
        entities=entities or [],
        knowledge_findings=findings or [],
        review_reasons=[reason],
        **_prediction_fields(category, confidence, brand_obj),
    )
    task = ReviewTask.objects.create(
        listing=listing,
        prediction=prediction,
        reason=reason,
        priority=(1 - confidence) if priority is None else priority,
        category=category,
    )
    if age is not None:
        ReviewTask.objects.filter(pk=task.pk).update(created_at=timezone.now() - age)
        task.refresh_from_db()
    return task


def review_tasks_bulk(count: int, *, category: Category | None = None, confidence: float = 0.5) -> list[int]:
    """Many tasks quickly (bulk_create), for concurrency tests. Returns the task ids."""
    category = category or category_path("Apparel", "Topwear", "Tshirts")
    version = model_version()
    image = tiny_image_name()
    stamp = timezone.now().timestamp()
    listings = Listing.objects.bulk_create(
        [
            Listing(
                source="bulk",
                external_id=f"bulk-{stamp}-{i}",
                title=f"Bulk listing {i}",
                image=image,
                image_sha256=f"{i:064d}",
                status=Listing.Status.IN_REVIEW,
            )
            for i in range(count)
        ]
    )
    fields = _prediction_fields(category, confidence, None)
    predictions = Prediction.objects.bulk_create(
        [Prediction(listing=listing, model_version=version, **fields) for listing in listings]
    )
    tasks = ReviewTask.objects.bulk_create(
        [
            ReviewTask(
                listing=listing,
                prediction=prediction,
                reason=ReviewTask.Reason.LOW_CONFIDENCE,
                priority=(i % 97) / 97,
                category=category,
            )
            for i, (listing, prediction) in enumerate(zip(listings, predictions, strict=True))
        ]
    )
    return [t.pk for t in tasks]


def review_cache_reset() -> None:
    """Forget the review keys this suite writes (never a whole-cache clear: other suites share Redis)."""
    from django.core.cache import cache

    from classifier.review.item import CATEGORY_LABELS_KEY
    from classifier.review.selectors import COUNTS_CACHE_KEY, cached_compute_forget

    cached_compute_forget()
    keys = [f"review:skipped:{i}" for i in range(1, 5000)]
    keys += [COUNTS_CACHE_KEY, CATEGORY_LABELS_KEY, "review:confhist:10"]
    cache.delete_many(keys)
    # The item page's similar-listings pools, one key per (category, brand): found by pattern.
    client = getattr(getattr(cache, "_cache", None), "get_client", None)
    if client is not None:
        redis = client(write=True)
        stale = list(redis.scan_iter(match=cache.make_key("review:similar:*")))
        if stale:
            redis.delete(*stale)


def plain_static_storage(settings) -> None:
    """Pages render {% static %}: tests have no collectstatic manifest, so use the plain storage."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


# Headers of an htmx request that swaps the review page's work area, as review.js sends them.
HTMX_REVIEW = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "review-work"}
