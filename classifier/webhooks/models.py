"""Webhook endpoints (managed by admins), the events sent, and one delivery per endpoint and event."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class EventType(models.TextChoices):
    LISTING_CLASSIFIED = "listing.classified", "Listing classified (auto-accepted or sent to review)"
    REVIEW_DECIDED = "review.decided", "Review decided (approve, correct, skip, escalate, undo)"
    MODEL_PROMOTED = "model.promoted", "Model promoted (or rolled back to)"


class WebhookEndpoint(models.Model):
    """An integrator's URL, the events it wants, and the secret its deliveries are signed with."""

    name = models.CharField(max_length=100)
    url = models.URLField(max_length=500, help_text="https:// in production; receives a POST per event")
    events = models.JSONField(default=list, help_text='Event types, e.g. ["review.decided"]')
    secret = models.CharField(
        max_length=100, help_text="Shared HMAC-SHA256 key; generated when the endpoint is created"
    )
    is_active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.url})"

    def wants(self, event_type: str) -> bool:
        return self.is_active and event_type in (self.events or [])


class WebhookEvent(models.Model):
    """One event to send, taken from the audit trail (one row per audit event: collected once)."""

    audit_event_id = models.BigIntegerField(unique=True)
    type = models.CharField(max_length=40, choices=EventType.choices, db_index=True)
    payload = models.JSONField(help_text="The JSON body sent to every endpoint, byte for byte")
    occurred_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.type} #{self.audit_event_id}"


class WebhookDelivery(models.Model):
    """Sending one event to one endpoint: attempts, the last answer, and when to try again."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting to be sent"
        SENDING = "sending", "Being sent"
        SUCCEEDED = "succeeded", "Delivered"
        FAILED = "failed", "Gave up"

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(db_index=True)
    locked_until = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "event"], name="webhook_delivery_once_per_endpoint")
        ]

    def __str__(self) -> str:
        return f"{self.event} -> {self.endpoint.name}: {self.status}"
