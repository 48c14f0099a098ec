"""The append-only audit trail: the event row and the one way to write it."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.db import models

# Who acts: a person, an anonymous request (recorded without an actor) or the system (None).
Actor = User | AnonymousUser | None


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


def audit_record(
    *,
    actor: Actor,
    verb: str,
    obj: models.Model,
    data: dict[str, object] | None = None,
) -> AuditEvent:
    """Record that `actor` (a user or None for the system) did `verb` to `obj`."""
    return AuditEvent.objects.create(
        actor=actor if isinstance(actor, User) else None,  # anonymous or the system: no actor
        verb=verb,
        object_type=obj._meta.label_lower,
        object_id=str(obj.pk),
        data=data or {},
    )
