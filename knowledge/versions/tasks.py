"""Celery tasks that put a published version in force. The names keep their first home
(`knowledge.tasks.…`): queued messages, the beat schedule and the task routes name them so."""

from __future__ import annotations

from celery import Task, shared_task

from knowledge.versions.activation import knowledge_activation_sweep as activation_sweep
from knowledge.versions.activation import snapshot_push


@shared_task(
    bind=True,
    name="knowledge.tasks.knowledge_snapshot_push",
    max_retries=None,
    acks_late=True,
)
def knowledge_snapshot_push(self: Task, number: int) -> bool:
    """Push knowledge version `number` into the entity cache; retried with back-off while the cache is down."""
    if snapshot_push(number=number):
        return True
    if self.request.is_eager:
        return False
    raise self.retry(countdown=min(60, 2 ** min(self.request.retries, 6)))


@shared_task(name="knowledge.tasks.knowledge_activation_sweep")
def knowledge_activation_sweep() -> list[int]:
    """Periodic safety net: push any published version the cache never got."""
    return activation_sweep()
