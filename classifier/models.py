"""Listings, what the model said about them, and what people decided."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from knowledge.models import Brand, Category


class RouteReasonChoice(models.TextChoices):
    """`classifier.fusion.routing.RouteReason` plus auto-accepted, for the stored `route_reason`."""

    UNKNOWN_CATEGORY = "unknown_category", "Unknown category"
    KNOWLEDGE_CONFLICT = "knowledge_conflict", "Knowledge conflict"
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


class Prediction(models.Model):
    """What one model version said about one listing; at most one per (listing, version)."""

    class Path(models.TextChoices):
        LIGHT = "light", "Light (keyword matching)"
        FULL = "full", "Full semantic path"
        FULL_HIRES = "full+hires", "Full path + high-resolution second pass"

    listing = models.ForeignKey(Listing, on_delete=models.CASCADE, related_name="predictions")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="predictions")
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

    listing = models.ForeignKey(Listing, on_delete=models.CASCADE, related_name="review_tasks")
    prediction = models.ForeignKey(Prediction, on_delete=models.PROTECT, related_name="review_tasks")
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
            # whatever the size of the done backlog (see classifier/services/review.py).
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
    listing = models.ForeignKey(Listing, on_delete=models.PROTECT, related_name="decisions")
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
        indexes = [models.Index(fields=["auditor", "-created_at"], name="review_decision_auditor_idx")]

    def __str__(self) -> str:
        return f"{self.action} by {self.auditor_id} on {self.listing_id}"


class AuditEvent(models.Model):
    """Who did what to which object, and when. Append-only."""

    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    verb = models.CharField(max_length=60, db_index=True)
    object_type = models.CharField(max_length=60)
    object_id = models.CharField(max_length=64)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["object_type", "object_id", "-created_at"], name="audit_object_idx")]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_id} {self.verb} {self.object_type}:{self.object_id}"


# --- fine-tuning, evaluation gate, drift (issue 6) ----------------------------------------------


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
    base_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="training_jobs")
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
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="produced_by_jobs"
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


class DriftAlert(models.Model):
    """The drift monitor saw the accuracy of auto-accepted predictions drop beyond the configured amount."""

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="drift_alerts")
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
