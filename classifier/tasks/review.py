"""Review-queue housekeeping on the `default` queue."""

from __future__ import annotations

from celery import shared_task

from fusionreview.celery import Queue

__all__ = ["review_release_expired"]


@shared_task(name="classifier.tasks.review.review_release_expired", queue=Queue.DEFAULT.value, ignore_result=True)
def review_release_expired() -> int:
    """Return expired claims to the queue (beat runs it every minute; claiming also does it on demand)."""
    from classifier.services.review import review_release_expired as release

    released = 0
    # Bounded batches so one run never holds locks on a huge backlog for long.
    for _ in range(20):
        n = release(limit=500)
        released += n
        if n < 500:
            break
    return released
