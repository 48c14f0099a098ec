"""Classification tasks on the `inference` queue.

`classify_listings(listing_ids)` takes ids only and is idempotent (see
`classifier.services.classification.listings_classify`). Messages are acknowledged after the
work (`acks_late`) and handed back if the worker process dies (`reject_on_worker_lost`), so
a SIGKILLed worker loses nothing: the batch is redelivered and the listings that already got
their prediction are skipped.

Opportunistic batching: the API sends one id per message. A message with fewer ids than
settings.INFERENCE_BATCH_SIZE tops its batch up with other queued, unpredicted listings,
claimed in the cache (`cache.add`, a short TTL) so two workers do not pick the same extras.
The later messages for those extras find a prediction and finish in one query. Claims are
only an optimisation: the explicit ids of a message are always processed, and the per-listing
row lock plus the unique (listing, model_version) constraint keep the result exactly-once.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from celery import shared_task
from django.conf import settings
from django.core.cache import cache
from django.db import InterfaceError, OperationalError

from fusionreview.celery import Queue

log = logging.getLogger(__name__)

__all__ = ["classify_listings", "classify_pending"]

CLAIM_KEY = "classify:claim:{id}"


def _claim_extras(ids: list[int], *, batch_size: int) -> list[int]:
    from classifier.inference import EngineUnavailable, model_version_serving
    from classifier.selectors.listings import listings_pending_ids

    room = batch_size - len(ids)
    if room <= 0 or not getattr(settings, "INFERENCE_COALESCE", True):
        return []
    extras: list[int] = []
    try:
        version = model_version_serving()
    except EngineUnavailable:
        return []  # listings_classify reports it
    candidates = listings_pending_ids(version=version, limit=room * 3, exclude=set(ids))
    ttl = settings.CLAIM_TTL_SECONDS
    for candidate in candidates:
        try:
            claimed = cache.add(CLAIM_KEY.format(id=candidate), 1, timeout=ttl)
        except Exception:  # cache down: no extras, the ids of the message still run
            log.warning("cache unavailable; not batching extra listings")
            return extras
        if claimed:
            extras.append(candidate)
            if len(extras) >= room:
                break
    return extras


def _release(ids: list[int]) -> None:
    with contextlib.suppress(Exception):
        cache.delete_many([CLAIM_KEY.format(id=i) for i in ids])


@shared_task(
    bind=True,
    name="classifier.tasks.classify_listings",
    queue=Queue.INFERENCE,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=5,
)
def classify_listings(self: Any, listing_ids: list[int]) -> dict[str, Any]:
    """Classify these listings (and, when there is room, other queued ones) in one model batch."""
    from classifier.services.classification import listings_classify

    started_at = time.time()
    ids = [int(i) for i in listing_ids]
    with contextlib.suppress(Exception):
        cache.set_many({CLAIM_KEY.format(id=i): 1 for i in ids}, timeout=settings.CLAIM_TTL_SECONDS)
    extras = _claim_extras(ids, batch_size=settings.INFERENCE_BATCH_SIZE)
    try:
        report = listings_classify(listing_ids=ids, extra_ids=extras)
    finally:
        _release(ids + extras)
    result = report.as_dict()
    result["extra_ids"] = len(extras)
    log.info("classified batch: %s", result)
    # Wall-clock marks and the ids done, for the pipeline benchmark's per-stage latencies.
    result["started_at"] = started_at
    result["finished_at"] = time.time()
    result["ids"] = report.classified + report.failed
    return result


@shared_task(bind=True, name="classifier.tasks.classify_pending", queue=Queue.INFERENCE)
def classify_pending(self: Any, limit: int = 10_000) -> int:
    """Queue every listing still waiting for a prediction from the serving model (a sweeper)."""
    from classifier.inference import model_version_serving
    from classifier.selectors.listings import listings_pending_ids

    ids = listings_pending_ids(version=model_version_serving(), limit=limit)
    size = settings.INFERENCE_BATCH_SIZE
    for start in range(0, len(ids), size):
        classify_listings.delay(ids[start : start + size])
    return len(ids)
