"""Classification on the `inference` queue and the listings sweeper on `default` (beat)."""

from __future__ import annotations

import contextlib
import logging
import random
import time
from typing import Any

import kombu.exceptions
import redis.exceptions
from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.cache import cache
from django.db import InterfaceError, OperationalError

from classifier.listings.classification import listings_classify
from classifier.listings.selectors import listings_pending_ids
from classifier.listings.services import listings_sweep as sweep
from classifier.registry.artifacts import EngineUnavailable
from classifier.registry.services import model_version_serving_ensure
from fusionreview.metrics import task_event_count

log = logging.getLogger(__name__)
CLAIM_KEY = "classify:claim:{id}"


def _claim_extras(ids: list[int], *, batch_size: int) -> list[int]:

    room = batch_size - len(ids)
    if room <= 0 or not getattr(settings, "INFERENCE_COALESCE", True):
        return []
    extras: list[int] = []
    try:
        version = model_version_serving_ensure()
    except EngineUnavailable:
        return []  # listings_classify reports it
    candidates = listings_pending_ids(version=version, limit=room * 3, exclude=set(ids))
    ttl = settings.INFERENCE_CLAIM_TTL_SECONDS
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


def retry_delay(attempt: int, *, max_delay: float) -> float:
    """Seconds before retry number `attempt` (0-based): 1, 2, 4, ... capped, with +-25 % jitter."""
    base = min(float(max_delay), 2.0**attempt)
    return max(0.5, base * random.uniform(0.75, 1.25))


def retry_window_left(first_attempt_at: float | None, *, window: float, now: float | None = None) -> float:
    """Seconds of the retry window left (negative once it is spent)."""
    if first_attempt_at is None:
        return window
    return window - ((now or time.time()) - first_attempt_at)


# Transient: the database or the broker/cache went away. Anything else is a bug or bad data,
# and listings_classify already turns per-listing problems into `failed` with a reason.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    kombu.exceptions.OperationalError,
)


@shared_task(
    bind=True,
    name="classifier.tasks.classify_listings",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=settings.CLASSIFY_SOFT_TIME_LIMIT,
    time_limit=settings.CLASSIFY_TIME_LIMIT,
    max_retries=None,  # bounded by time instead: settings.CLASSIFY_RETRY_WINDOW
)
def classify_listings(
    self: Any, listing_ids: list[int], first_attempt_at: float | None = None
) -> dict[str, Any] | None:
    """Classify these listings (and, when there is room, other queued ones) in one model batch.

    Retries on a transient error (database or Redis away) with capped exponential back-off
    for settings.CLASSIFY_RETRY_WINDOW seconds from the first attempt -- bounded by time, not
    by a count, so a 60 s outage never exhausts them. After the window, or if the retry
    cannot even be sent, the listings stay `queued` and the sweeper sends them again.
    """

    started_at = time.time()
    first_attempt_at = first_attempt_at or started_at
    ids = [int(i) for i in listing_ids]
    ttl = settings.INFERENCE_CLAIM_TTL_SECONDS
    with contextlib.suppress(Exception):
        cache.set_many({CLAIM_KEY.format(id=i): 1 for i in ids}, timeout=ttl)
    extras: list[int] = []
    try:
        extras = _claim_extras(ids, batch_size=settings.INFERENCE_BATCH_SIZE)
        report = listings_classify(listing_ids=ids, extra_ids=extras)
    except SoftTimeLimitExceeded:
        # Give the listings back untouched (still queued): the sweeper sends them again.
        log.error("classification of %s hit the soft time limit; left for the sweeper", ids)
        task_event_count(task=self.name, event="time_limit")
        return None
    except TRANSIENT_ERRORS as exc:
        left = retry_window_left(first_attempt_at, window=settings.CLASSIFY_RETRY_WINDOW)
        if left <= 0 or self.request.is_eager:
            log.error("classification of %s gave up (%s); the sweeper will send it again", ids, exc)
            task_event_count(task=self.name, event="gave_up")
            return None
        delay = min(retry_delay(self.request.retries, max_delay=settings.CLASSIFY_RETRY_MAX_DELAY), left)
        log.warning("classification of %s: %s: %s; retry in %.1fs", ids, type(exc).__name__, exc, delay)
        task_event_count(task=self.name, event="retry")
        raise self.retry(args=[ids], kwargs={"first_attempt_at": first_attempt_at}, countdown=delay) from exc
    finally:
        _release(ids + extras)
    result = report.as_dict()
    result["extra_ids"] = len(extras)
    log.info("classified batch: %s", result, extra={"listing_ids": report.classified + report.failed})
    # Wall-clock marks and the ids done, for the pipeline benchmark's per-stage latencies.
    result["started_at"] = started_at
    result["finished_at"] = time.time()
    result["ids"] = report.classified + report.failed
    return result


@shared_task(name="classifier.tasks.listings_sweep", ignore_result=True)
def listings_sweep() -> dict[str, int]:
    """Send classification again for queued/failed listings whose message is gone."""

    return sweep().as_dict()
