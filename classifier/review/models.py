"""The review queue: a task per listing waiting for a person, and what people decided."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from classifier.listings.models import RouteReasonChoice
from knowledge.models import Brand, Category


class ReviewTask(models.Model):
    """A listing waiting for a person, with why it waits and who holds it."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting"
        CLAIMED = "claimed", "Claimed"
        DONE = "done", "Decided"

    class Reason(models.TextChoices):
        LOW_CONFIDENCE = "low_confidence", "Low confidence"
        KNOWLEDGE_CONFLICT = "knowledge_conflict", "Knowledge conflict"
        ESCALATED = "escalated", "Escalated"

    listing = models.ForeignKey("classifier.Listing", on_delete=models.CASCADE, related_name="review_tasks")
    prediction = models.ForeignKey(
        "classifier.Prediction", on_delete=models.PROTECT, related_name="review_tasks"
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    reason = models.CharField(max_length=30, choices=Reason.choices)
    reason_detail = models.TextField(blank=True)
    # Why the router sent it (queue filter); a knowledge reason is re-checked on every publish.
    route_reason = models.CharField(
        max_length=30, choices=RouteReasonChoice.choices, blank=True, default="", db_index=True
    )
    # Set when a knowledge publish resolved the task (no conflict left): the version that did it.
    resolved_by_knowledge_version = models.PositiveIntegerField(null=True, blank=True)
    priority = models.FloatField(default=0.0, help_text="Higher is served first")
    category = models.ForeignKey(Category, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="claimed_tasks",
    )
    claim_expires_at = models.DateTimeField(null=True, blank=True)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    # Not columns: set by classifier.review.selectors.review_task_annotate_sla for the pages.
    age_hours: float
    is_overdue: bool
    sla_left_hours: float

    class Meta:
        ordering = ["-priority", "created_at"]
        constraints = [
            # One open task per listing: a redelivered classification cannot queue it twice.
            models.UniqueConstraint(
                fields=["listing"], condition=~Q(status="done"), name="review_task_one_open_per_listing"
            ),
        ]
        indexes = [
            models.Index(
                fields=["status", "reason", "-priority", "created_at"], name="review_task_queue_idx"
            ),
            models.Index(fields=["status", "claim_expires_at"], name="review_task_claim_idx"),
            # Partial indexes over the waiting rows only: "claim next" is an index scan + LIMIT 1
            # whatever the size of the done backlog (see classifier/review/services.py).
            models.Index(
                F("priority").desc(),
                "created_at",
                condition=Q(status="pending"),
                name="review_pending_prio_idx",
            ),
            models.Index(fields=["created_at"], condition=Q(status="pending"), name="review_pending_age_idx"),
            models.Index(
                "category",
                F("priority").desc(),
                "created_at",
                condition=Q(status="pending"),
                name="review_pending_cat_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"review {self.pk} ({self.status}) for {self.listing_id}"


class ReviewDecision(models.Model):
    """One auditor action on a task; never overwritten (an undo is a new row pointing back)."""

    class Action(models.TextChoices):
        APPROVE = "approve", "Approve"
        CORRECT = "correct", "Correct"
        SKIP = "skip", "Skip"
        ESCALATE = "escalate", "Escalate"
        UNDO = "undo", "Undo"

    class Cause(models.TextChoices):
        NONE = "", "—"
        MODEL_ERROR = "model_error", "Model error"
        KNOWLEDGE_GAP = "knowledge_gap", "Knowledge-graph gap"
        BAD_LISTING = "bad_listing", "Bad listing data"

    task = models.ForeignKey(ReviewTask, on_delete=models.PROTECT, related_name="decisions")
    listing = models.ForeignKey("classifier.Listing", on_delete=models.PROTECT, related_name="decisions")
    auditor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="decisions")
    action = models.CharField(max_length=20, choices=Action.choices)
    category = models.ForeignKey(Category, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    brand = models.ForeignKey(Brand, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    cause = models.CharField(max_length=20, choices=Cause.choices, blank=True, default="")
    comment = models.TextField(blank=True)
    undoes = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="undone_by"
    )
    # Feeds fine-tuning while true: set on approve/correct, cleared when undone.
    is_training_example = models.BooleanField(default=False, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        # An auditor's newest decisions (recent picks, undo) in index order, id breaking ties: without the id
        # PostgreSQL sorted all of their decisions on every item page.
        indexes = [models.Index(fields=["auditor", "-created_at", "-id"], name="review_decision_auditor_idx")]

    def __str__(self) -> str:
        return f"{self.action} by {self.auditor_id} on {self.listing_id}"
