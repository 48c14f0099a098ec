"""Celery tasks of the knowledge graph: pushing a published snapshot, deriving suggestions."""

from __future__ import annotations

import logging

from celery import shared_task

log = logging.getLogger(__name__)

# Beat runs the activation sweep, the suggestions refresh and the re-route sweep: see
# CELERY_BEAT_SCHEDULE in fusionreview/settings.py (the one schedule).


@shared_task(
    bind=True,
    name="knowledge.tasks.knowledge_snapshot_push",
    max_retries=None,
    acks_late=True,
)
def knowledge_snapshot_push(self, number: int) -> bool:
    """Push knowledge version `number` into the entity cache; retried with back-off while the cache is down."""
    from knowledge.services import snapshot_push

    if snapshot_push(number=number):
        return True
    if self.request.is_eager:
        return False
    raise self.retry(countdown=min(60, 2 ** min(self.request.retries, 6)))


@shared_task(name="knowledge.tasks.knowledge_activation_sweep")
def knowledge_activation_sweep() -> list[int]:
    """Periodic safety net: push any published version the cache never got."""
    from knowledge.services import knowledge_activation_sweep as sweep

    return sweep()


@shared_task(name="knowledge.tasks.knowledge_suggestions_refresh")
def knowledge_suggestions_refresh() -> dict[str, int]:
    """Periodic: derive alias / brand-category suggestions from recent review decisions."""
    from knowledge.services import suggestions_refresh

    return suggestions_refresh()


@shared_task(
    name="knowledge.tasks.knowledge_reroute",
    acks_late=True,
)
def knowledge_reroute(job_id: int) -> dict[str, int] | None:
    """Re-check the open knowledge-routed review tasks against a published version (idempotent)."""
    from knowledge.reroute import knowledge_reroute_run

    job = knowledge_reroute_run(job_id=job_id)
    if job is None:
        return None
    return {"checked": job.checked, "resolved": len(job.resolved_task_ids), "status": job.status}


@shared_task(name="knowledge.tasks.knowledge_reroute_sweep")
def knowledge_reroute_sweep() -> list[int]:
    """Run re-route jobs that were never started (broker down at publish time)."""
    from knowledge.reroute import reroute_sweep

    return reroute_sweep()
