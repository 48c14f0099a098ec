"""Django admin for listings, predictions, reviews and model versions: read-only.

Writes to these rows have rules the admin form would skip: a decision is appended and audit-logged
(`classifier.review.decisions`), a promotion needs a passed gate and a verified checksum
(`classifier.registry.services`), a listing is validated on ingest. Staff can look everything up here;
they act through the product's pages and API.
"""

from __future__ import annotations

from django.contrib import admin

from classifier.audit import AuditEvent
from classifier.listings.models import Listing, Prediction
from classifier.registry.models import ModelEvaluation, ModelVersion
from classifier.review.models import ReviewDecision, ReviewTask
from classifier.training.models import DriftAlert, TrainingJob
from knowledge.admin import ReadOnlyAdmin, ReadOnlyInline


class PredictionInline(ReadOnlyInline):
    model = Prediction
    fields = ("model_version", "category_label", "confidence", "brand_label", "compute_path", "needs_review")
    show_change_link = True


class ReviewTaskInline(ReadOnlyInline):
    model = ReviewTask
    fields = ("status", "reason", "priority", "claimed_by", "created_at", "decided_at")
    show_change_link = True


@admin.register(Listing)
class ListingAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "source",
        "external_id",
        "title",
        "status",
        "final_category",
        "final_brand",
        "created_at",
    )
    list_filter = ("status", "source")
    search_fields = ("title", "=external_id")
    list_select_related = ("final_category", "final_brand")
    date_hierarchy = "created_at"
    inlines = [PredictionInline, ReviewTaskInline]


@admin.register(Prediction)
class PredictionAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "listing",
        "model_version",
        "category_label",
        "confidence",
        "compute_path",
        "needs_review",
    )
    list_filter = ("needs_review", "compute_path", "is_shadow", "model_version")
    search_fields = ("category_label", "listing__title", "=listing__external_id")
    list_select_related = ("listing", "model_version")


class ReviewDecisionInline(ReadOnlyInline):
    model = ReviewDecision
    fk_name = "task"
    fields = (
        "created_at",
        "auditor",
        "action",
        "category",
        "brand",
        "cause",
        "comment",
        "is_training_example",
    )


@admin.register(ReviewTask)
class ReviewTaskAdmin(ReadOnlyAdmin):
    list_display = ("id", "listing", "status", "reason", "priority", "claimed_by", "created_at", "decided_at")
    list_filter = ("status", "reason")
    search_fields = ("listing__title", "=listing__external_id")
    list_select_related = ("listing", "claimed_by")
    inlines = [ReviewDecisionInline]


@admin.register(ReviewDecision)
class ReviewDecisionAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "created_at",
        "auditor",
        "action",
        "listing",
        "category",
        "cause",
        "is_training_example",
    )
    list_filter = ("action", "cause", "is_training_example")
    search_fields = ("listing__title", "auditor__username", "comment")
    list_select_related = ("auditor", "listing", "category")
    date_hierarchy = "created_at"


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "actor", "verb", "object_type", "object_id")
    list_filter = ("verb", "object_type")
    search_fields = ("=object_id", "actor__username", "verb")
    list_select_related = ("actor",)
    date_hierarchy = "created_at"


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = ("name", "status", "parent", "review_threshold", "created_at", "promoted_at", "trained_by")
    list_filter = ("status",)
    search_fields = ("name", "checksum")
    list_select_related = ("parent", "trained_by")


@admin.register(ModelEvaluation)
class ModelEvaluationAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "candidate", "baseline", "passed", "eval_set", "margin_points")
    list_filter = ("passed",)
    list_select_related = ("candidate", "baseline")


@admin.register(TrainingJob)
class TrainingJobAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "status",
        "trigger",
        "base_version",
        "example_count",
        "epochs",
        "result_version",
        "created_at",
    )
    list_filter = ("status", "trigger")
    list_select_related = ("base_version", "result_version")


@admin.register(DriftAlert)
class DriftAlertAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "model_version",
        "baseline_accuracy",
        "current_accuracy",
        "checked_items",
        "resolved_at",
    )
    list_select_related = ("model_version",)
