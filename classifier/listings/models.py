"""Listings as received and what the model said about them."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from knowledge.models import Brand, Category


class RouteReasonChoice(models.TextChoices):
    """`classifier.fusion.routing.RouteReason` plus auto-accepted, for the stored `route_reason`."""

    UNKNOWN_CATEGORY = "unknown_category", "Unknown category"
    KNOWLEDGE_CONFLICT = "knowledge_conflict", "Knowledge conflict"
    NEW_CATEGORY = "new_category", "New category, not named by the title"
    LOW_CONFIDENCE = "low_confidence", "Low confidence"
    AUTO_ACCEPTED = "auto_accepted", "Auto-accepted"


class Listing(models.Model):
    """A product photo and title as received from a marketplace source."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued for classification"
        ACCEPTED = "accepted", "Accepted automatically"
        IN_REVIEW = "in_review", "In review"
        REVIEWED = "reviewed", "Decided by a person"
        FAILED = "failed", "Classification failed"

    source = models.CharField(max_length=100)
    external_id = models.CharField(max_length=200)
    title = models.CharField(max_length=1000)
    description = models.TextField(blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    image = models.ImageField(upload_to="listings/%Y/%m/")
    image_sha256 = models.CharField(max_length=64, db_index=True)
    image_width = models.PositiveIntegerField(default=0)
    image_height = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True)
    failure_reason = models.TextField(blank=True)
    # The label in force: the auto-accepted prediction's, or the auditor's decision.
    final_category = models.ForeignKey(
        Category, null=True, blank=True, on_delete=models.PROTECT, related_name="final_listings"
    )
    final_brand = models.ForeignKey(
        Brand, null=True, blank=True, on_delete=models.SET_NULL, related_name="final_listings"
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint("source", "external_id", name="listing_unique_source_external_id")
        ]
        # The item page's "similar reviewed" pool: a category's newest reviewed listings by index,
        # not a scan and sort of every reviewed listing in it (~7,000 rows each at a million).
        indexes = [
            models.Index(fields=["final_category", "status", "-updated_at"], name="listing_similar_idx")
        ]
        permissions = [
            ("ingest_listing", "Can submit listings"),
            ("review_listing", "Can work the review queues"),
            ("manage_models", "Can fine-tune, promote and roll back model versions"),
        ]

    def __str__(self) -> str:
        return f"{self.source}:{self.external_id}"


class Prediction(models.Model):
    """What one model version said about one listing; at most one per (listing, version)."""

    class Path(models.TextChoices):
        LIGHT = "light", "Light (keyword matching)"
        FULL = "full", "Full semantic path"
        FULL_HIRES = "full+hires", "Full path + high-resolution second pass"

    listing = models.ForeignKey(Listing, on_delete=models.CASCADE, related_name="predictions")
    model_version = models.ForeignKey(
        "classifier.ModelVersion", on_delete=models.PROTECT, related_name="predictions"
    )
    is_shadow = models.BooleanField(
        default=False, help_text="Made by a candidate in shadow mode; not routed."
    )
    category = models.ForeignKey(Category, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    category_label = models.CharField(max_length=500, help_text="The predicted path as the model named it")
    master_category = models.CharField(max_length=120)
    sub_category = models.CharField(max_length=120)
    article_type = models.CharField(max_length=120)
    master_confidence = models.FloatField()
    sub_confidence = models.FloatField()
    article_confidence = models.FloatField()
    confidence = models.FloatField(db_index=True, help_text="Calibrated confidence of the leaf category")
    top_k = models.JSONField(default=dict)
    brand = models.ForeignKey(Brand, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    brand_label = models.CharField(max_length=200, blank=True)
    brand_confidence = models.FloatField(default=0.0)
    compute_path = models.CharField(max_length=20, choices=Path.choices)
    latency_ms = models.FloatField()
    complexity = models.FloatField(default=0.0)
    knowledge_version = models.PositiveIntegerField(default=0)
    knowledge_findings = models.JSONField(default=list, blank=True)
    entities = models.JSONField(default=list, blank=True)
    needs_review = models.BooleanField()
    review_reasons = models.JSONField(default=list, blank=True)
    # The primary reason `classifier.fusion.routing.route` gave; empty for rows older than it.
    route_reason = models.CharField(max_length=30, choices=RouteReasonChoice.choices, blank=True, default="")
    attention_map = models.ImageField(upload_to="attention/%Y/%m/", blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint("listing", "model_version", name="prediction_unique_listing_version"),
        ]

    def __str__(self) -> str:
        return f"{self.listing} -> {self.category_label} ({self.confidence:.2f})"
