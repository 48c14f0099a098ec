"""The append-only audit trail."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, User
from django.db import models

from classifier.models import AuditEvent


def audit_record(
    *,
    actor: User | AnonymousUser | None,
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
