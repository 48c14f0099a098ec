"""Model versions (artifacts and lineage) and their evaluation-gate runs."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class ModelVersion(models.Model):
    """A trained fusion model artifact directory and its lineage."""

    class Status(models.TextChoices):
        CANDIDATE = "candidate", "Candidate"
        PROMOTED = "promoted", "In production"
        RETIRED = "retired", "Retired"
        REJECTED = "rejected", "Rejected by the evaluation gate"

    name = models.CharField(max_length=100, unique=True)
    artifact_dir = models.CharField(max_length=500)
    checksum = models.CharField(max_length=64, help_text="SHA-256 of model.safetensors")
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.CANDIDATE, db_index=True)
    metrics = models.JSONField(default=dict, blank=True)
    review_threshold = models.FloatField(null=True, blank=True)
    data_window_start = models.DateTimeField(null=True, blank=True)
    data_window_end = models.DateTimeField(null=True, blank=True)
    trained_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    promoted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # At most one version serves production at a time.
            models.UniqueConstraint(
                fields=["status"], condition=Q(status="promoted"), name="model_version_single_promoted"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class ModelEvaluation(models.Model):
    """A gate run: a candidate compared with the production version on the frozen set and recent reviews."""

    candidate = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="evaluations")
    baseline = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    eval_set = models.CharField(max_length=200, help_text="Which frozen evaluation set was used")
    passed = models.BooleanField()
    reasons = models.JSONField(
        default=list, blank=True, help_text="Why promotion is refused (empty if passed)"
    )
    candidate_metrics = models.JSONField(default=dict, blank=True)  # {"frozen": {...}, "recent": {...}}
    baseline_metrics = models.JSONField(default=dict, blank=True)
    margin_points = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.candidate} vs {self.baseline}: {'pass' if self.passed else 'refused'}"
