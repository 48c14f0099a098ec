"""Review-queue housekeeping on the `default` queue."""

from __future__ import annotations

from celery import shared_task

from classifier.review.services import review_release_expired as release


# Routed to the `default` queue (the task default; beat passes it explicitly too).
@shared_task(name="classifier.tasks.review.review_release_expired", ignore_result=True)
def review_release_expired() -> int:
    """Return expired claims to the queue (beat runs it every minute; claiming also does it on demand)."""

    released = 0
    # Bounded batches so one run never holds locks on a huge backlog for long.
    for _ in range(20):
        n = release(limit=500)
        released += n
        if n < 500:
            break
    return released
