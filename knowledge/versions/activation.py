"""Putting a published version in force: the entity cache gets it, the row is marked activated."""

from __future__ import annotations

import logging

from django.utils import timezone

from classifier.fusion.knowledge import KnowledgeSnapshot
from knowledge import cache
from knowledge.models import KnowledgeVersion

log = logging.getLogger(__name__)


def snapshot_push(*, number: int, snapshot: KnowledgeSnapshot | None = None, raw: str | None = None) -> bool:
    """Write one published version to the entity cache and mark it in force. Idempotent.

    A version older than one already in force is marked activated without moving the pointer.
    """
    if snapshot is None:
        row = KnowledgeVersion.objects.filter(number=number).first()
        if row is None:
            log.warning("knowledge v%s does not exist; nothing to push", number)
            return True
        snapshot = KnowledgeSnapshot.from_dict(row.snapshot)
    if not cache.snapshot_store(snapshot, raw=raw):
        return False
    KnowledgeVersion.objects.filter(number=number, activated_at__isnull=True).update(
        activated_at=timezone.now()
    )
    return True


def knowledge_activation_sweep() -> list[int]:
    """Push every published version the cache never got (after a cache or broker outage)."""
    pushed = []
    for number in (
        KnowledgeVersion.objects.filter(activated_at__isnull=True)
        .order_by("number")
        .values_list("number", flat=True)
    ):
        if snapshot_push(number=number):
            pushed.append(number)
    return pushed
