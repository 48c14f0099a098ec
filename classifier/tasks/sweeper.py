"""The listings sweeper on the `default` queue (beat runs it every settings.SWEEP_INTERVAL seconds).

It is the one safety net for classification messages that were never sent (broker down at
ingest), lost (Redis restarted without persistence) or stuck (a worker killed with -9): see
`classifier.services.listings.listings_sweep`. `manage.py classify_pending` runs the same code.
"""

from __future__ import annotations

from celery import shared_task

__all__ = ["listings_sweep"]


@shared_task(name="classifier.tasks.listings_sweep", ignore_result=True)
def listings_sweep() -> dict[str, int]:
    """Send classification again for queued/failed listings whose message is gone."""
    from classifier.services.listings import listings_sweep as sweep

    return sweep().as_dict()
