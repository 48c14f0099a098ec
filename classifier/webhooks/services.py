"""Webhook writes: endpoints, collecting events from the audit trail, one delivery attempt at a time.

Delivery is at least once: a receiver may see an event twice (a worker lost after the POST and
before the row was updated) and should de-duplicate on the event id (`evt_<n>`) or the
`X-FusionReview-Delivery` header.
"""

from __future__ import annotations

import json
import logging
import secrets
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from classifier.audit import Actor, AuditEvent
from classifier.webhooks.events import VERB_EVENTS, event_payload
from classifier.webhooks.models import EventType, WebhookDelivery, WebhookEndpoint, WebhookEvent
from classifier.webhooks.signing import SIGNATURE_HEADER, signature_header

log = logging.getLogger(__name__)

# Audit events are collected from a window this far back, so an event whose transaction committed
# late (its id lower than ones already collected) is still picked up; the unique audit_event_id
# makes collecting twice harmless.
COLLECT_LOOKBACK = timedelta(minutes=10)
COLLECT_BATCH = 500
SEND_LEASE = timedelta(minutes=2)
# How long a delivery handed to the broker is left to its message before the collector sends it
# again (the message was lost: Redis restarted, the send failed). Shorter than the broker's
# visibility timeout, longer than a busy default queue usually takes to reach it.
DISPATCH_LEASE = timedelta(seconds=60)


def webhook_secret_new() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def webhook_endpoint_create(
    *, name: str, url: str, events: list[str], actor: Actor = None
) -> WebhookEndpoint:
    """A new endpoint with a fresh secret. Refused (ValidationError) for an unknown event type or URL scheme."""
    unknown = sorted(set(events) - set(EventType.values))
    if unknown:
        raise ValidationError(
            f"Unknown event type(s): {', '.join(unknown)}; known: {', '.join(EventType.values)}"
        )
    if not events:
        raise ValidationError("Choose at least one event type.")
    if not url.startswith(("https://", "http://")):
        raise ValidationError("The URL must start with https:// (or http:// on a private network).")
    return WebhookEndpoint.objects.create(
        name=name.strip()[:100] or url[:100],
        url=url,
        events=sorted(set(events)),
        secret=webhook_secret_new(),
        created_by=actor if isinstance(actor, User) else None,
    )


def _backoff(attempts: int) -> timedelta:
    """Wait after the `attempts`-th failure: base, 3x base, 9x base, ... capped at an hour."""
    base = float(settings.WEBHOOK_RETRY_BASE_SECONDS)
    return timedelta(seconds=min(3600.0, base * (3 ** max(0, attempts - 1))))


@transaction.atomic
def webhook_events_collect(*, now: datetime | None = None) -> list[int]:
    """Turn new audit-trail entries into events and deliveries; returns the ids of deliveries to send.

    An endpoint receives the events that happened after it was created and that it subscribes to.
    """
    now = now or timezone.now()
    endpoints = list(WebhookEndpoint.objects.filter(is_active=True))
    if not endpoints:
        return []
    seen = WebhookEvent.objects.filter(audit_event_id=OuterRef("pk"))
    audits = list(
        AuditEvent.objects.filter(verb__in=VERB_EVENTS, created_at__gte=now - COLLECT_LOOKBACK)
        .annotate(collected=Exists(seen))
        .filter(collected=False, created_at__gte=min(e.created_at for e in endpoints))
        .order_by("id")[:COLLECT_BATCH]
    )
    if not audits:
        return []
    WebhookEvent.objects.bulk_create(
        [
            WebhookEvent(
                audit_event_id=a.pk,
                type=VERB_EVENTS[a.verb],
                payload=event_payload(a),
                occurred_at=a.created_at,
            )
            for a in audits
        ],
        ignore_conflicts=True,
    )
    events = WebhookEvent.objects.filter(audit_event_id__in=[a.pk for a in audits])
    deliveries = [
        WebhookDelivery(endpoint=endpoint, event=event, next_attempt_at=now)
        for event in events
        for endpoint in endpoints
        if endpoint.wants(event.type) and event.occurred_at >= endpoint.created_at
    ]
    WebhookDelivery.objects.bulk_create(deliveries, ignore_conflicts=True)
    return list(
        WebhookDelivery.objects.filter(
            event__in=events, status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now
        ).values_list("id", flat=True)
    )


def webhook_deliveries_due(*, now: datetime | None = None, limit: int = 500) -> list[int]:
    """Deliveries to send now, each handed out once per DISPATCH_LEASE; returns their ids.

    The beat collector (every WEBHOOK_COLLECT_INTERVAL seconds) is the only scheduler of
    deliveries: first sends, retries that became due after their backoff, and sends whose message
    or worker was lost. Retries are never scheduled as broker countdowns: a countdown longer than
    the broker's visibility timeout (backoff reaches an hour, the timeout is a few minutes) would
    be redelivered by Redis before it is due. A delivery handed out is leased (`locked_until`) so
    the next collection does not send it again while its message waits; a lost message frees it
    when the lease ends.
    """
    now = now or timezone.now()
    WebhookDelivery.objects.filter(status=WebhookDelivery.Status.SENDING, locked_until__lt=now).update(
        status=WebhookDelivery.Status.PENDING, locked_until=None
    )
    with transaction.atomic():
        ids = list(
            WebhookDelivery.objects.select_for_update(skip_locked=True)
            .filter(status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now)
            .filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now))
            .order_by("next_attempt_at", "pk")
            .values_list("id", flat=True)[:limit]
        )
        if ids:
            WebhookDelivery.objects.filter(pk__in=ids, status=WebhookDelivery.Status.PENDING).update(
                locked_until=now + DISPATCH_LEASE
            )
    return ids


@dataclass
class AttemptResult:
    delivered: bool
    # Seconds until the next attempt is due (the collector sends it then); None: no retry
    # (delivered, gave up, or not due).
    retry_in: float | None
    status_code: int | None = None
    error: str = ""


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, str]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=float(settings.WEBHOOK_TIMEOUT_SECONDS)) as response:
            return response.status, ""
    except urllib.error.HTTPError as exc:
        return exc.code, f"HTTP {exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return None, f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"


def webhook_delivery_attempt(*, delivery_id: int, now: datetime | None = None) -> AttemptResult:
    """Send one delivery once, if it is due and nobody else is sending it; record the outcome.

    Idempotent: a delivery already delivered, given up, not yet due or being sent is left alone.
    """
    now = now or timezone.now()
    claimed = WebhookDelivery.objects.filter(
        Q(pk=delivery_id), Q(status=WebhookDelivery.Status.PENDING), Q(next_attempt_at__lte=now)
    ).update(status=WebhookDelivery.Status.SENDING, attempts=F("attempts") + 1, locked_until=now + SEND_LEASE)
    if not claimed:
        return AttemptResult(delivered=False, retry_in=None)
    delivery = WebhookDelivery.objects.select_related("endpoint", "event").get(pk=delivery_id)
    body = json.dumps(delivery.event.payload, ensure_ascii=False, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "FusionReview-Webhooks/1",
        "X-FusionReview-Event": delivery.event.type,
        "X-FusionReview-Delivery": str(delivery.pk),
        SIGNATURE_HEADER: signature_header(secret=delivery.endpoint.secret, body=body),
    }
    code, error = _post(delivery.endpoint.url, body, headers)
    done = timezone.now()
    if code is not None and 200 <= code < 300:
        WebhookDelivery.objects.filter(pk=delivery_id).update(
            status=WebhookDelivery.Status.SUCCEEDED,
            delivered_at=done,
            last_status_code=code,
            last_error="",
            locked_until=None,
        )
        return AttemptResult(delivered=True, retry_in=None, status_code=code)
    error = error or f"HTTP {code}"
    if delivery.attempts >= int(settings.WEBHOOK_MAX_ATTEMPTS):
        WebhookDelivery.objects.filter(pk=delivery_id).update(
            status=WebhookDelivery.Status.FAILED,
            last_status_code=code,
            last_error=error[:2000],
            locked_until=None,
        )
        log.warning(
            "webhook delivery %s gave up after %s attempts: %s", delivery_id, delivery.attempts, error
        )
        return AttemptResult(delivered=False, retry_in=None, status_code=code, error=error)
    wait = _backoff(delivery.attempts)
    WebhookDelivery.objects.filter(pk=delivery_id).update(
        status=WebhookDelivery.Status.PENDING,
        next_attempt_at=done + wait,
        last_status_code=code,
        last_error=error[:2000],
        locked_until=None,
    )
    return AttemptResult(delivered=False, retry_in=wait.total_seconds(), status_code=code, error=error)


def webhook_delivery_retry_now(*, delivery: WebhookDelivery) -> bool:
    """An admin's "send again": a failed or waiting delivery becomes due now (attempts start over)."""
    return bool(
        WebhookDelivery.objects.filter(
            pk=delivery.pk, status__in=[WebhookDelivery.Status.FAILED, WebhookDelivery.Status.PENDING]
        ).update(
            status=WebhookDelivery.Status.PENDING,
            next_attempt_at=timezone.now(),
            attempts=0,
            locked_until=None,
        )
    )
