"""The append-only audit trail."""

from __future__ import annotations

from typing import Any

from django.db import models

from classifier.models import AuditEvent


def audit_record(
    *, actor: Any, verb: str, obj: models.Model, data: dict[str, Any] | None = None
) -> AuditEvent:
    """Record that `actor` (a user or None for the system) did `verb` to `obj`."""
    return AuditEvent.objects.create(
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        verb=verb,
        object_type=obj._meta.label_lower,
        object_id=str(obj.pk),
        data=data or {},
    )
