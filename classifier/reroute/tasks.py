"""Celery tasks of the publish re-route. The names keep their first home (`knowledge.tasks.…`):
queued messages, the beat schedule and the task routes name them so."""

from __future__ import annotations

from celery import shared_task

from classifier.reroute.jobs import knowledge_reroute_run, reroute_sweep


@shared_task(name="knowledge.tasks.knowledge_reroute", acks_late=True)
def knowledge_reroute(job_id: int) -> dict[str, int | str] | None:
    """Re-check the open knowledge-routed review tasks against a published version (idempotent)."""
    job = knowledge_reroute_run(job_id=job_id)
    if job is None:
        return None
    return {"checked": job.checked, "resolved": len(job.resolved_task_ids), "status": job.status}


@shared_task(name="knowledge.tasks.knowledge_reroute_sweep")
def knowledge_reroute_sweep() -> list[int]:
    """Run re-route jobs that were never started (broker down at publish time)."""
    return reroute_sweep()
