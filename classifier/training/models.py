"""Fine-tuning jobs and drift alerts."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class TrainingJob(models.Model):
    """One fine-tuning run: base version + approved corrections in a data window -> a candidate version."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    class Trigger(models.TextChoices):
        MANUAL = "manual", "Started by an admin"
        DRIFT = "drift", "Started by the drift monitor"

    ACTIVE_STATUSES = (Status.QUEUED, Status.RUNNING)

    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True)
    trigger = models.CharField(max_length=20, choices=Trigger.choices, default=Trigger.MANUAL)
    base_version = models.ForeignKey(
        "classifier.ModelVersion", on_delete=models.PROTECT, related_name="training_jobs"
    )
    data_window_start = models.DateTimeField(null=True, blank=True)
    data_window_end = models.DateTimeField()
    epochs = models.PositiveSmallIntegerField(default=3)
    example_count = models.PositiveIntegerField(default=0, help_text="Approved corrections in the window")
    replay_count = models.PositiveIntegerField(default=0, help_text="Earlier training rows mixed in")
    # live progress, written by the worker
    epoch = models.PositiveSmallIntegerField(default=0)
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    loss = models.FloatField(null=True, blank=True)
    eta_seconds = models.FloatField(null=True, blank=True)
    phase = models.CharField(max_length=60, blank=True)
    log = models.TextField(blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True, db_index=True)
    cancel_requested = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    result_version = models.ForeignKey(
        "classifier.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="produced_by_jobs",
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # One job at a time: a second one is refused while one is queued or running.
            models.UniqueConstraint(
                models.Value(True),
                condition=Q(status__in=["queued", "running"]),
                name="training_job_single_active",
            ),
        ]

    def __str__(self) -> str:
        return f"training job {self.pk} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE_STATUSES

    @property
    def log_tail(self) -> str:
        return "\n".join(self.log.splitlines()[-15:])


class DriftAlert(models.Model):
    """The drift monitor saw the accuracy of auto-accepted predictions drop beyond the configured amount."""

    model_version = models.ForeignKey(
        "classifier.ModelVersion", on_delete=models.CASCADE, related_name="drift_alerts"
    )
    baseline_accuracy = models.FloatField()
    current_accuracy = models.FloatField()
    checked_items = models.PositiveIntegerField()
    detail = models.TextField(blank=True)
    training_job = models.ForeignKey(
        TrainingJob, null=True, blank=True, on_delete=models.SET_NULL, related_name="drift_alerts"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"drift on {self.model_version}: {self.baseline_accuracy:.3f} -> {self.current_accuracy:.3f}"

    @property
    def drop_points(self) -> float:
        return 100.0 * (self.baseline_accuracy - self.current_accuracy)
