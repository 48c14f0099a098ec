"""Webhook tasks on the `default` queue (CELERY_TASK_DEFAULT_QUEUE): collect events (beat), send one delivery."""

from __future__ import annotations

from celery import shared_task

from fusionreview.dispatch import task_dispatch, task_publish


@shared_task(name="webhooks.collect", ignore_result=True)
def webhooks_collect() -> int:
    """Beat, every WEBHOOK_COLLECT_INTERVAL seconds: new events -> deliveries, and overdue ones sent again."""
    from classifier.webhooks.services import webhook_deliveries_due, webhook_events_collect

    ids = webhook_events_collect()
    ids += [i for i in webhook_deliveries_due() if i not in set(ids)]
    for delivery_id in ids:
        task_dispatch(webhook_deliver, args=[delivery_id])
    return len(ids)


@shared_task(name="webhooks.deliver", ignore_result=True)
def webhook_deliver(delivery_id: int) -> bool:
    """POST one delivery; on failure schedule the next attempt with backoff (the delivery row says when)."""
    from classifier.webhooks.services import webhook_delivery_attempt

    result = webhook_delivery_attempt(delivery_id=delivery_id)
    if result.retry_in is not None:
        task_publish(webhook_deliver, args=[delivery_id], countdown=result.retry_in)
    return result.delivered
