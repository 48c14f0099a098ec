"""Listing ingestion: validate everything first, then write once, idempotently.

`listing_ingest` is the one way a listing enters the system (the API, the CSV import and the
benchmark all call it). A bad input raises `ListingRejected` before any row or file exists.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO

from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.utils import timezone

from classifier.audit import Actor, audit_record
from classifier.listings.models import Listing
from classifier.listings.validation import ListingConflict, image_validate, listing_fields_validate
from classifier.task_names import CLASSIFY_LISTINGS, task_signature
from fusionreview.dispatch import task_dispatch, task_publish

log = logging.getLogger(__name__)


def _same_content(listing: Listing, *, title: str, description: str, sha256: str) -> bool:
    return listing.title == title and listing.description == description and listing.image_sha256 == sha256


def _resolve_existing(
    existing: Listing, *, title: str, description: str, sha256: str
) -> tuple[Listing, bool]:
    if _same_content(existing, title=title, description=description, sha256=sha256):
        return existing, False
    differs = [
        name
        for name, same in (
            ("title", existing.title == title),
            ("description", existing.description == description),
            ("image", existing.image_sha256 == sha256),
        )
        if not same
    ]
    raise ListingConflict(
        f"external_id: listing {existing.source}:{existing.external_id} already exists with a different "
        f"{', '.join(differs)}; nothing was changed",
        existing=existing,
    )


# A live "sent" mark says: a classify message for this listing went to the broker recently, so
# the sweeper leaves it alone until the mark expires (settings.CLASSIFY_REDISPATCH_AFTER).
SENT_KEY = "classify:sent:{id}"


# How many times the sweeper already sent a failed listing again.
FAILED_ATTEMPTS_KEY = "classify:failed-attempts:{id}"


def _mark_sent(ids: list[int]) -> None:

    with contextlib.suppress(Exception):  # cache down: the sweeper may send once more, harmless
        cache.set_many({SENT_KEY.format(id=i): 1 for i in ids}, timeout=settings.CLASSIFY_REDISPATCH_AFTER)


def listing_classification_dispatch(*, listing_ids: list[int]) -> None:
    """Queue classification once the current transaction commits (the worker must see the rows).

    Never raises and never blocks for long: when the broker is down the listing stays queued
    and `listings_sweep` sends it later (see `fusionreview.dispatch`).
    """
    if not listing_ids:
        return
    ids = [int(i) for i in listing_ids]
    task_dispatch(
        task_signature(CLASSIFY_LISTINGS),
        args=[ids],
        after_send=lambda sent: _mark_sent(ids) if sent else None,
    )


@dataclass
class SweepReport:
    """What one sweep sent again, and what it could not send."""

    queued: int = 0
    failed_retried: int = 0
    sent_batches: int = 0
    unsent: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "queued": self.queued,
            "failed_retried": self.failed_retried,
            "sent_batches": self.sent_batches,
            "unsent": self.unsent,
        }


def _without_live_mark(ids: list[int]) -> list[int]:

    if not ids:
        return []
    try:
        marked = cache.get_many([SENT_KEY.format(id=i) for i in ids])
    except Exception:
        log.warning("cache unavailable; the sweeper treats every stuck listing as unsent")
        return ids
    return [i for i in ids if SENT_KEY.format(id=i) not in marked]


def _failed_retryable(ids: list[int]) -> list[int]:
    """Failed listings that have not used up their attempts; counts this attempt."""

    limit = settings.CLASSIFY_FAILED_MAX_ATTEMPTS
    if not ids or limit <= 0:
        return []
    keys = {i: FAILED_ATTEMPTS_KEY.format(id=i) for i in ids}
    try:
        attempts = cache.get_many(list(keys.values()))
    except Exception:
        return []  # without the count a permanent failure would be retried forever: wait for the cache
    chosen = [i for i in ids if int(attempts.get(keys[i], 0)) < limit]
    with contextlib.suppress(Exception):
        cache.set_many({keys[i]: int(attempts.get(keys[i], 0)) + 1 for i in chosen}, timeout=7 * 24 * 3600)
    return chosen


def listings_sweep(
    *,
    limit: int | None = None,
    now: datetime | None = None,
    min_age: float | None = None,
    respect_marks: bool = True,
) -> SweepReport:
    """Send classification again for listings whose message was never sent, lost or stuck.

    Picks (oldest first, at most `limit`):
      - `queued` listings older than SWEEP_MIN_AGE with no live "sent" mark: the broker was
        down at ingest, Redis lost its queue in a restart, or the worker died holding them;
      - `failed` listings unchanged for CLASSIFY_REDISPATCH_AFTER seconds, at most
        CLASSIFY_FAILED_MAX_ATTEMPTS times each (a failure may be a passing one).

    Sending twice is harmless: classification skips a listing that already has a prediction
    from the serving model (and the unique (listing, version) constraint backs that up).
    """

    now = now or timezone.now()
    limit = limit or settings.SWEEP_BATCH_LIMIT
    min_age = settings.SWEEP_MIN_AGE if min_age is None else min_age
    queued = list(
        Listing.objects.filter(status=Listing.Status.QUEUED, created_at__lt=now - timedelta(seconds=min_age))
        .order_by("created_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    if respect_marks:
        queued = _without_live_mark(queued)
    failed = list(
        Listing.objects.filter(
            status=Listing.Status.FAILED,
            updated_at__lt=now - timedelta(seconds=settings.CLASSIFY_REDISPATCH_AFTER),
        )
        .order_by("updated_at", "pk")
        .values_list("pk", flat=True)[: max(0, limit - len(queued))]
    )
    failed = _failed_retryable(_without_live_mark(failed) if respect_marks else failed)
    report = SweepReport(queued=len(queued), failed_retried=len(failed))
    ids = queued + failed
    size = settings.INFERENCE_BATCH_SIZE
    for start in range(0, len(ids), size):
        batch = ids[start : start + size]
        if task_publish(task_signature(CLASSIFY_LISTINGS), args=[batch]):
            _mark_sent(batch)
            report.sent_batches += 1
        else:
            # The broker is down: the rest would fail the same way; the next sweep tries again.
            report.unsent = len(ids) - start
            break
    if ids:
        log.info("sweep: %s", report.as_dict())
    return report


def listing_ingest(
    *,
    source: str,
    external_id: str,
    title: str,
    description: str = "",
    attributes: dict[str, object] | None = None,
    image_file: IO[bytes] | bytes | None,
    actor: Actor = None,
    dispatch: bool = True,
) -> tuple[Listing, bool]:
    """Validate and store one listing, then queue it for classification.

    Idempotent on (source, external_id): the same content again returns the existing listing
    with created=False; different content raises `ListingConflict` and changes nothing.

    Args:
        source: the marketplace or feed the listing came from.
        external_id: the listing's id in that source.
        title: the product title (stripped; 1..MAX_TITLE_LENGTH characters).
        description: optional free text.
        attributes: optional JSON object (colour, gender, ...).
        image_file: JPEG, PNG or WebP bytes or a file object.
        actor: the user submitting it (None for the system).
        dispatch: queue classification on commit (False lets a bulk caller batch it).

    Returns:
        (listing, created).

    Raises:
        ListingRejected: bad input (nothing written).
        ListingConflict: same (source, external_id), different content (nothing written).
    """
    fields = listing_fields_validate(
        source=source, external_id=external_id, title=title, description=description, attributes=attributes
    )
    image = image_validate(image_file)

    existing = Listing.objects.filter(source=fields["source"], external_id=fields["external_id"]).first()
    if existing is not None:
        return _resolve_existing(
            existing, title=fields["title"], description=fields["description"], sha256=image.sha256
        )

    listing = Listing(
        **fields,
        image_sha256=image.sha256,
        image_width=image.width,
        image_height=image.height,
        created_by=actor if isinstance(actor, User) else None,
    )
    # The file is written first (storage is not transactional); any failure below removes it.
    listing.image.save(f"{image.sha256[:20]}.{image.extension}", ContentFile(image.data), save=False)
    try:
        with transaction.atomic():
            listing.save(force_insert=True)
            audit_record(
                actor=actor,
                verb="listing.ingest",
                obj=listing,
                data={"source": listing.source, "external_id": listing.external_id},
            )
    except IntegrityError:
        # A concurrent request inserted the same (source, external_id) between our check and insert.
        listing.image.delete(save=False)
        existing = Listing.objects.filter(source=fields["source"], external_id=fields["external_id"]).first()
        if existing is None:
            raise
        return _resolve_existing(
            existing, title=fields["title"], description=fields["description"], sha256=image.sha256
        )
    except BaseException:
        listing.image.delete(save=False)
        raise
    if dispatch:
        listing_classification_dispatch(listing_ids=[listing.pk])
    return listing, True
