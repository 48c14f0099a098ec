"""Webhook tasks on the `default` queue (CELERY_TASK_DEFAULT_QUEUE): collect events (beat), send one delivery."""

from __future__ import annotations

from celery import shared_task

from classifier.webhooks.services import (
    webhook_deliveries_due,
    webhook_delivery_attempt,
    webhook_events_collect,
)
from fusionreview.dispatch import task_dispatch


@shared_task(name="webhooks.collect", ignore_result=True)
def webhooks_collect() -> int:
    """Beat, every WEBHOOK_COLLECT_INTERVAL seconds: new events -> deliveries; send every due delivery.

    Due means new, a retry whose backoff has passed, or one whose message was lost: retries are
    picked up here, never scheduled as broker countdowns (see `webhook_deliveries_due`).
    """

    webhook_events_collect()
    ids = webhook_deliveries_due()
    for delivery_id in ids:
        task_dispatch(webhook_deliver, args=[delivery_id])
    return len(ids)


@shared_task(name="webhooks.deliver", ignore_result=True)
def webhook_deliver(delivery_id: int) -> bool:
    """POST one delivery; a failure sets when the next attempt is due, and the collector sends it then."""

    return webhook_delivery_attempt(delivery_id=delivery_id).delivered
