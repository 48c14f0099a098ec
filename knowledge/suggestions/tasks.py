"""Celery task deriving suggestions. The name keeps its first home (`knowledge.tasks.…`): the beat
schedule and the task routes name it so."""

from __future__ import annotations

from celery import shared_task

from knowledge.suggestions.services import suggestions_refresh


@shared_task(name="knowledge.tasks.knowledge_suggestions_refresh")
def knowledge_suggestions_refresh() -> dict[str, int]:
    """Periodic: derive alias / brand-category suggestions from recent review decisions."""
    return suggestions_refresh()
